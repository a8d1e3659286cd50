package oauth

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzSecrets are planted in the seed corpus as tokens and secrets a
// provider might echo back; no error may ever contain one.
var fuzzSecrets = []string{
	"fzAT7Hq2xL9vB4nR8sW1zK5", // access token
	"fzRT3Fj8kP2mQ6wE9tY4uI0", // refresh token
	"fzCS9Zx4Cv7Bn2Mq5Wr8Ty1", // client secret
	"fzID6Lp3Ds8Gh1Jk4Nb7Vc2", // id token
}

// FuzzParseTokenResponse checks that ParseTokenResponse never panics, that a
// success always carries a usable token, and that an error is always an
// *Error free of the planted secrets.
func FuzzParseTokenResponse(f *testing.F) {
	at, rt, cs, id := fuzzSecrets[0], fuzzSecrets[1], fuzzSecrets[2], fuzzSecrets[3]
	date := testNow.Add(90 * time.Second).Format(http.TimeFormat)
	seeds := []struct {
		status      int
		contentType string
		retryAfter  string
		body        string
	}{
		// Successes, each shape of expires_in.
		{200, ctJSON, "", `{"access_token":"` + at + `","token_type":"Bearer","expires_in":3600,"refresh_token":"` + rt + `","scope":"a b","id_token":"` + id + `"}`},
		{200, ctJSON, "", `{"access_token":"` + at + `","expires_in":"3600"}`},
		{200, ctJSON, "", `{"access_token":"` + at + `"}`},
		{200, ctJSON, "", `{"access_token":"` + at + `","expires_in":-5}`},
		{200, ctJSON, "", `{"access_token":"` + at + `","expires_in":1e308}`},
		{200, ctJSON, "", `{"access_token":"` + at + `","expires_in":"1e400"}`},
		{200, ctJSON, "", `{"access_token":"` + at + `","expires_in":59.5,"token_type":"bearer"}`},
		{200, ctJSON, "", `{"access_token":"` + at + `","expires_in":null,"scope":["a","b"]}`},
		{200, ctJSON, "", "\xef\xbb\xbf{\"access_token\":\"" + at + "\"}\n"},
		// Form-encoded, and Content-Types that do not match the body.
		{200, ctForm, "", "access_token=" + at + "&expires_in=60&refresh_token=" + rt},
		{200, ctJSON, "", "access_token=" + at + "&token_type=bearer"},
		{200, ctForm, "", `{"access_token":"` + at + `","expires_in":60}`},
		{200, ctText, "", `{"access_token":"` + at + `","expires_in":60}`},
		// Errors in a 200, in a 4xx, form-encoded, as an object.
		{200, ctJSON, "", `{"error":"invalid_grant","error_description":"refresh token ` + rt + ` revoked","access_token":"` + at + `"}`},
		{400, ctJSON, "", `{"error":"invalid_grant","error_description":"bad","error_uri":"https://idp.example.com/e?refresh_token=` + rt + `"}`},
		{401, ctJSON, "", `{"error":"invalid_client","error_description":"client_secret=` + cs + ` is wrong"}`},
		{400, ctForm, "", "error=unauthorized_client&error_description=" + cs},
		{400, ctJSON, "", `{"error":"` + rt + `"}`},
		{401, ctJSON, "", `{"error":{"code":401,"message":"token ` + at + ` expired","status":"UNAUTHENTICATED"}}`},
		// No access_token, malformed bodies.
		{200, ctJSON, "", `{"token_type":"Bearer","refresh_token":"` + rt + `"}`},
		{200, ctJSON, "", `{"access_token":"","expires_in":60}`},
		{200, ctJSON, "", `{"access_token":"` + at + `","refresh_token":"` + rt + `",`},
		{200, ctJSON, "", `[{"access_token":"` + at + `"}]`},
		{200, ctJSON, "", ``},
		// HTML pages with 200 and 5xx, echoing secrets.
		{200, ctHTML, "", `<html><head><title>Login</title></head><body><a href="/cb?access_token=` + at + `">go</a></body></html>`},
		{502, ctHTML, "", `<html><body><h1>502 Bad Gateway</h1><pre>Authorization: Basic ` + cs + "\nrefresh_token=" + rt + `</pre></body></html>`},
		{500, ctHTML, "", `<script>var t="` + at + `";</script><p>` + id + ` &amp; ` + rt + `</p>`},
		{500, ctText, "", "upstream error: " + at + " " + rt + " " + cs + " " + id},
		// Retry-After as seconds and as an HTTP date.
		{429, ctJSON, "7", `{"error":"slow_down"}`},
		{503, ctHTML, date, `<h1>Service Unavailable</h1>`},
		{503, ctText, "99999999999999999999", "busy"},
	}
	for _, s := range seeds {
		f.Add(s.status, s.contentType, s.retryAfter, []byte(s.body), false)
	}
	// Oversized bodies: the oversize flag pads the body past
	// MaxResponseSize, so that the corpus itself stays small (the fuzzer
	// would spend its time minimizing a 1 MiB input).
	f.Add(200, ctJSON, "", []byte(`{"access_token":"`+at+`","expires_in":60}`), true)
	f.Add(502, ctHTML, "5", []byte(`<html>`+rt+`</html>`), true)

	f.Fuzz(func(t *testing.T, status int, contentType, retryAfter string, body []byte, oversize bool) {
		if oversize {
			body = append(body, bytes.Repeat([]byte(" "), MaxResponseSize+1)...)
		}
		h := http.Header{}
		h.Set("Content-Type", contentType)
		h.Set("Retry-After", retryAfter)
		tok, err := ParseTokenResponse(status, h, body, testNow, 30*time.Minute)
		if err == nil {
			if tok == nil {
				t.Fatal("nil token and nil error")
			}
			if tok.AccessToken == "" || hasControl(tok.AccessToken) {
				t.Fatalf("unusable AccessToken %q", tok.AccessToken)
			}
			if tok.Expiry.IsZero() || !tok.Expiry.After(testNow) || tok.Expiry.After(testNow.Add(MaxExpiresIn)) {
				t.Fatalf("Expiry %v not in (now, now+MaxExpiresIn]", tok.Expiry)
			}
			if tok.ExpiresIn < 0 || tok.ExpiresIn > MaxExpiresIn {
				t.Fatalf("ExpiresIn %v out of range", tok.ExpiresIn)
			}
			if tok.TokenType == "" || tok.Raw == nil {
				t.Fatalf("TokenType %q, Raw %v", tok.TokenType, tok.Raw)
			}
			if oversize || status < 200 || status > 299 {
				t.Fatalf("success with status %d", status)
			}
			return
		}
		if tok != nil {
			t.Fatal("token returned with an error")
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error %T is not an *Error", err)
		}
		msg := err.Error()
		for _, text := range []string{msg, e.Code, e.Description, e.URI, e.Excerpt} {
			for _, s := range fuzzSecrets {
				if strings.Contains(text, s) {
					t.Fatalf("secret %q in error text %q", s, text)
				}
			}
			if !utf8.ValidString(text) {
				t.Fatalf("invalid UTF-8 in error text %q", text)
			}
		}
		if utf8.RuneCountInString(e.Excerpt) > excerptLimit+1 || utf8.RuneCountInString(e.Description) > descriptionLimit+1 {
			t.Fatalf("excerpt or description too long: %q / %q", e.Excerpt, e.Description)
		}
		if e.RetryAfter < 0 || e.RetryAfter > MaxRetryAfter {
			t.Fatalf("RetryAfter %v out of range", e.RetryAfter)
		}
		if Class(err) == "" || strings.ContainsAny(Class(err), " \n") {
			t.Fatalf("bad Class %q", Class(err))
		}
	})
}
