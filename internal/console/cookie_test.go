package console

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestCookiesSecureUnderHTTPS: the cookies are Secure when the public URL
// is https, and always HttpOnly, SameSite=Strict and scoped to the console.
func TestCookiesSecureUnderHTTPS(t *testing.T) {
	for _, tt := range []struct {
		public string
		secure bool
	}{{"https://broker.example.com", true}, {"http://127.0.0.1:8080", false}, {"", false}} {
		c := &Console{}
		c.secure = isHTTPS(tt.public)
		rec := httptest.NewRecorder()
		c.setCookie(rec, cookieAccess, "v")
		ck := rec.Result().Cookies()[0]
		if ck.Secure != tt.secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != Prefix {
			t.Errorf("public URL %q: %+v", tt.public, ck)
		}
	}
}

// TestLocalPath: only the console's own pages are returned to after
// signing in.
func TestLocalPath(t *testing.T) {
	for s, want := range map[string]bool{
		"/ui/": true, "/ui/credentials?status=error": true, "/ui/credentials/a%2Fb": true,
		"//evil.example/ui/": false, "https://evil.example/ui/": false, "/v1/credentials": false,
		"/ui/events": false, "/ui/static/console.js": false, "/ui/\\evil": false, "": false, "/uix": false,
	} {
		if got := localPath(s); got != want {
			t.Errorf("localPath(%q) = %v, want %v", s, got, want)
		}
	}
}
