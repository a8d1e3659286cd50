package proxy

import (
	"net/url"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
)

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"", "", ""},
		{"a/b", "a/b", ""},
		{"a/b/", "a/b/", ""},
		{"a//b", "a/b", ""},
		{"a/./b", "a/b", ""},
		{"a/../b", "b", ""},
		{"a/b/..", "a", ""},
		{"a%2Fb/c", "a%2Fb/c", ""}, // an escaped slash inside a segment is kept
		{"%7Euser", "%7Euser", ""},
		{"..", "", "leaves"},
		{"a/../..", "", "leaves"},
		{"%2e%2e/x", "", "leaves"},
		{"%2E%2E", "", "leaves"},
		{"..%2fadmin", "", "dot segment"},
		{"a%2F..%2F..", "", "dot segment"},
		{"..%5cadmin", "", "dot segment"},
		{"a%zz", "", "malformed"},
		{"a%00b", "", "control"},
	} {
		got, err := CleanPath(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("CleanPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("CleanPath(%q) = %q, %v; want an EINVALID error with %q", tc.in, got, err, tc.err)
		}
	}
}

// FuzzCleanPath: whatever the input, a cleaned path joined under a base
// path stays under it once resolved, with no dot segment left.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "a/%2e%2e/b", "..%2f", "a//b/./c/", "%2F%2e%2E"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := CleanPath(in)
		if err != nil {
			return
		}
		dec, err := url.PathUnescape(p)
		if err != nil {
			t.Fatalf("CleanPath(%q) = %q: not a valid escaped path", in, p)
		}
		for _, seg := range strings.FieldsFunc(dec, func(r rune) bool { return r == '/' || r == '\\' }) {
			if seg == ".." || seg == "." {
				t.Fatalf("CleanPath(%q) = %q holds a dot segment", in, p)
			}
		}
		if strings.HasPrefix(p, "/") {
			t.Fatalf("CleanPath(%q) = %q starts with a slash", in, p)
		}
		// The proxy appends it to the base path, as text.
		if r, err := url.Parse("https://api.example/base/" + p); err == nil && (r.Host != "api.example" || !strings.HasPrefix(r.Path, "/base/")) {
			t.Fatalf("CleanPath(%q) = %q reaches another host: %s", in, p, r.Host)
		}
	})
}
