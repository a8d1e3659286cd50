package http

import (
	"encoding/json"
	"testing"
	"time"
)

// appendTokenJSON writes what json.Marshal of tokenJSON writes, for tokens
// that need escapes and for those that do not.
func TestAppendTokenJSONMatchesMarshal(t *testing.T) {
	at := time.Date(2026, 11, 29, 8, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		token, typ string
		at         time.Time
		in         int64
	}{
		{"ya29.a0AfH6SMB-x_y~z+/=", "Bearer", at, 3599},
		{"plain", "bearer", time.Time{}, 0},
		{`quote"back\slash`, "Bearer", at.Truncate(time.Second), 1},
		{"<html>&amp;", "MAC", at, 42},
		{"ctl\x01\n\ttab", "Bearer", at, 7},
		{"ünïcödé\u2028", "Bearer", at.Add(500 * time.Millisecond), 60},
		{"", "", at, 1},
	} {
		j := tokenJSON{AccessToken: tc.token, TokenType: tc.typ}
		if !tc.at.IsZero() {
			a, in := tc.at, tc.in
			j.ExpiresAt, j.ExpiresIn = &a, &in
		}
		want, err := json.Marshal(&j)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendTokenJSON(nil, tc.token, tc.typ, tc.at, tc.in); string(got) != string(want) {
			t.Errorf("token %q:\n got %s\nwant %s", tc.token, got, want)
		}
	}
}

func FuzzAppendTokenJSON(f *testing.F) {
	f.Add("access-token", "Bearer", int64(1700000000), int64(3600))
	f.Add("a\"b<c>\x00", "", int64(0), int64(1))
	f.Fuzz(func(t *testing.T, token, typ string, unix, in int64) {
		at := time.Unix(unix%(1<<40), 0).UTC()
		j := tokenJSON{AccessToken: token, TokenType: typ, ExpiresAt: &at, ExpiresIn: &in}
		want, err := json.Marshal(&j)
		if err != nil {
			t.Skip()
		}
		if got := appendTokenJSON(nil, token, typ, at, in); string(got) != string(want) {
			t.Errorf("got %s, want %s", got, want)
		}
	})
}
