package http

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// parseTokenForm reads what url.ParseQuery reads, and refuses what it
// refuses, besides a repeated parameter.
func TestParseTokenFormAgreesWithParseQuery(t *testing.T) {
	for _, body := range []string{
		"", "grant_type=client_credentials&scope=credential%3Aapi",
		"grant_type=client_credentials&scope=credential:a+b&client_id=svc&client_secret=s%2Bc%26r",
		"a", "a=", "=b", "&&a=1&", "a=1&b", "x=%zz", "%=1", "a=1;b=2", "k%20ey=v+al", "a=%E2%82%AC",
		"p0=0&p1=1&p2=2&p3=3&p4=4&p5=5&p6=6&p7=7&p8=8&p9=9&p10=10",
	} {
		want, werr := url.ParseQuery(body)
		got, err := parseTokenForm(body, nil)
		if (err != nil) != (werr != nil) {
			t.Errorf("%q: error %v, url.ParseQuery's %v", body, err, werr)
			continue
		}
		if err != nil {
			continue
		}
		if len(got) != len(want) {
			t.Errorf("%q: %d parameters, want %d", body, len(got), len(want))
		}
		for k, v := range want {
			if got.Get(k) != v[0] {
				t.Errorf("%q: %s = %q, want %q", body, k, got.Get(k), v[0])
			}
		}
	}
	for _, body := range []string{"a=1&a=2", "scope=x&grant_type=y&scope=x", "a=1&a", "a%3D=1&a%3d=2",
		"p0=0&p1=1&p2=2&p3=3&p4=4&p5=5&p6=6&p7=7&p8=8&p9=9&p3=x", "p0=0&p1=1&p2=2&p3=3&p4=4&p5=5&p6=6&p7=7&p3=3"} {
		_, err := parseTokenForm(body, nil)
		var rep repeatedParam
		if !errors.As(err, &rep) {
			t.Errorf("%q: %v, want a repeated parameter", body, err)
		}
	}
	// The largest body, every parameter distinct or all the same: fast.
	var sb strings.Builder
	for i := 0; sb.Len() < maxTokenForm-16; i++ {
		fmt.Fprintf(&sb, "p%d&", i)
	}
	if _, err := parseTokenForm(sb.String(), nil); err != nil {
		t.Fatal(err)
	}
}

// The hand-encoded answer is what encoding/json writes for the same map.
func TestAppendOAuthTokenIsJSON(t *testing.T) {
	for _, tc := range []struct {
		token, scope string
		in           int64
	}{{"at-1", "credential:api", 3599}, {"a\"b<c>\\\u00e9\n", "credential:x&y", 1}, {"at", "credential:api", -1}} {
		m := map[string]any{"access_token": tc.token, "token_type": "Bearer", "scope": tc.scope}
		if tc.in >= 0 {
			m["expires_in"] = tc.in
		}
		want, _ := json.Marshal(m)
		if got := appendOAuthToken(nil, tc.token, tc.scope, tc.in); string(got) != string(want) {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}

// oneScope finds what strings.Fields finds when that is one field.
func TestOneScope(t *testing.T) {
	for _, s := range []string{"", " ", "credential:a", " credential:a\t", "a b", "a\u00a0b", "\u2003a\u2003", "a\nb", "credential:a credential:b",
		"a\vb", "a\fb", "a\rb", "\u00e9", "\u00e9 b", "\u00e9\u0085b", "a\u0085", "credential:\u00e9t\u00e9", "a\u3000b"} {
		f := strings.Fields(s)
		got, ok := oneScope(s)
		if ok != (len(f) == 1) || (ok && got != f[0]) {
			t.Errorf("oneScope(%q) = %q, %v; strings.Fields: %q", s, got, ok, f)
		}
	}
}

// httpDate is net/http's Date for the second, formatted once a second.
func TestHTTPDate(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 22, 9, 30, 100, time.FixedZone("X", 3600))
	a, b := httpDate(t0), httpDate(t0.Add(800*time.Millisecond))
	if a[0] != "Sun, 29 Nov 2026 21:09:30 GMT" || b[0] != a[0] || cap(a) != 1 || cap(b) != 1 {
		t.Errorf("%q, %q: want the second's value, in GMT, of capacity 1 (an append copies it)", a, b)
	}
	if c := httpDate(t0.Add(time.Second)); c[0] != "Sun, 29 Nov 2026 21:09:31 GMT" || a[0] != "Sun, 29 Nov 2026 21:09:30 GMT" {
		t.Errorf("the next second: %q (the last: %q)", c, a)
	}
}
