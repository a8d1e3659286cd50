package tokenkeeper_test

import (
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
)

func TestParseAPIToken(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want tokenkeeper.APIToken
		err  string
	}{
		{"Authorization: Bearer", tokenkeeper.DefaultAPIToken, ""},
		{"Authorization: token", tokenkeeper.APIToken{Header: "Authorization", Scheme: "token"}, ""},
		{"X-Api-Key:", tokenkeeper.APIToken{Header: "X-Api-Key"}, ""},
		{"?access_token", tokenkeeper.APIToken{Query: "access_token"}, ""},
		{"Bearer", tokenkeeper.APIToken{}, "give"},
		{":", tokenkeeper.APIToken{}, "required"},
		{"?", tokenkeeper.APIToken{}, "required"},
		{"Host:", tokenkeeper.APIToken{}, "cannot carry"},
		{"transfer-encoding: x", tokenkeeper.APIToken{}, "cannot carry"},
		{"Bad Header: x", tokenkeeper.APIToken{}, "not a valid header"},
		{"X-Key: two words", tokenkeeper.APIToken{}, "not a valid authentication scheme"},
		{"?a b", tokenkeeper.APIToken{}, "query parameter"},
	} {
		got, err := tokenkeeper.ParseAPIToken(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseAPIToken(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseAPIToken(%q) = %+v, %v; want EINVALID with %q", tc.in, got, err, tc.err)
		}
		if err == nil {
			if back, err := tokenkeeper.ParseAPIToken(got.String()); err != nil || back != got.Normalized() {
				t.Errorf("%q: String %q reads back as %+v, %v", tc.in, got.String(), back, err)
			}
		}
	}
	if (tokenkeeper.APIToken{}).String() != "Authorization: Bearer" {
		t.Errorf("the zero value is not the default")
	}
}

// FuzzParseAPIToken: whatever parses is valid and reads back the same.
func FuzzParseAPIToken(f *testing.F) {
	for _, s := range []string{"Authorization: Bearer", "X-Api-Key:", "?access_token", "Host:", ": x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := tokenkeeper.ParseAPIToken(in)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("ParseAPIToken(%q) = %+v, which is invalid: %v", in, got, err)
		}
		if back, err := tokenkeeper.ParseAPIToken(got.String()); err != nil || back != got {
			t.Fatalf("ParseAPIToken(%q) = %+v; String %q reads back as %+v, %v", in, got, got.String(), back, err)
		}
	})
}

func TestValidateAPIBaseURL(t *testing.T) {
	for _, ok := range []string{"https://api.example", "https://api.example/v2/", "http://127.0.0.1:8080/x"} {
		if err := tokenkeeper.ValidateAPIBaseURL(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://api.example", "https://api.example/?x=1", "https://api.example/#f", "https://u@api.example", "api.example", "ftp://api.example"} {
		if err := tokenkeeper.ValidateAPIBaseURL(bad); tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("%s: %v, want EINVALID", bad, err)
		}
	}
}
