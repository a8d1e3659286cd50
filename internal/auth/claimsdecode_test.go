package auth

import (
	"encoding/json"
	"testing"
)

func TestDecodeClaims(t *testing.T) {
	plain := mustJSON(t, validClaims())
	tests := []struct {
		name string
		in   string
		fast bool // takes the fast path
	}{
		{"broker's own form", plain, true},
		{"spaces", ` { "typ" : "access" , "exp" : 12 , "fresh" : false } `, true},
		{"empty object", `{}`, true},
		{"duplicate key, last wins", `{"typ":"refresh","typ":"access"}`, true},
		{"escape", `{"typ":"\u0061ccess"}`, false},
		{"non-ASCII", `{"name":"jürgen"}`, false},
		{"case-folded key", `{"TYP":"access"}`, false},
		{"unknown key", `{"typ":"access","x":1}`, false},
		{"null", `{"sub":null}`, false},
		{"float", `{"exp":1.5}`, false},
		{"exponent", `{"exp":1e9}`, false},
		{"negative", `{"exp":-1}`, false},
		{"leading zero", `{"exp":01}`, false},
		{"huge", `{"exp":99999999999999999999}`, false},
		{"string for number", `{"exp":"1"}`, false},
		{"number for string", `{"sub":1}`, false},
		{"trailing comma", `{"typ":"access",}`, false},
		{"trailing garbage", `{"typ":"access"}x`, false},
		{"array", `[]`, false},
		{"nested", `{"aud":["a"]}`, false},
		{"unterminated", `{"typ":"access"`, false},
		{"bool prefix", `{"fresh":truex}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fast wireClaims
			if got := decodeClaimsFast([]byte(tt.in), &fast, &testParams); got != tt.fast {
				t.Fatalf("fast path taken: %v, want %v", got, tt.fast)
			}
			checkLikeJSON(t, []byte(tt.in))
		})
	}
}

// checkLikeJSON checks that decodeClaims means what json.Unmarshal means.
func checkLikeJSON(t *testing.T, b []byte) {
	t.Helper()
	var got, want wireClaims
	gotErr := decodeClaims(b, &got, &testParams)
	wantErr := json.Unmarshal(b, &want)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("decodeClaims error %v, json.Unmarshal error %v, input %q", gotErr, wantErr, b)
	}
	if gotErr == nil && got != want {
		t.Fatalf("decodeClaims %+v\njson.Unmarshal %+v\ninput %q", got, want, b)
	}
}

// FuzzDecodeClaims checks that the claim decoder agrees with
// encoding/json on every input.
func FuzzDecodeClaims(f *testing.F) {
	f.Add([]byte(mustJSON(f, validClaims())))
	f.Add([]byte(`{"typ":"access","exp":1,"fresh":true,"fresh_until":0}`))
	f.Add([]byte(`{"typ":"\u0061ccess","EXP":1e3,"fresh":null}`))
	f.Add([]byte(` {"sub":"a" , "sub":"b"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkLikeJSON(t, b)
	})
}
