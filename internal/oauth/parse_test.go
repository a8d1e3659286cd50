package oauth

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// testNow is the fixed clock of the parser tests.
var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

const (
	ctJSON = "application/json"
	ctForm = "application/x-www-form-urlencoded"
	ctHTML = "text/html; charset=utf-8"
	ctText = "text/plain"
)

func TestParseTokenResponseSuccess(t *testing.T) {
	const def = 15 * time.Minute
	tests := []struct {
		name        string
		contentType string
		body        string
		defLifetime time.Duration
		want        Token // Raw is not compared
	}{
		{
			name: "expires_in number", contentType: ctJSON,
			body: `{"access_token":"at1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt1","scope":"a b"}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", RefreshToken: "rt1", Scope: "a b", ExpiresIn: time.Hour, Expiry: testNow.Add(time.Hour)},
		},
		{
			name: "expires_in numeric string", contentType: ctJSON,
			body: `{"access_token":"at1","token_type":"Bearer","expires_in":"3600"}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: time.Hour, Expiry: testNow.Add(time.Hour)},
		},
		{
			name: "expires_in string with spaces", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":" 120 "}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: 2 * time.Minute, Expiry: testNow.Add(2 * time.Minute)},
		},
		{
			name: "expires_in float", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":1.5}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: 1500 * time.Millisecond, Expiry: testNow.Add(1500 * time.Millisecond)},
		},
		{
			name: "expires_in float string", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":"59.999"}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: 59999 * time.Millisecond, Expiry: testNow.Add(59999 * time.Millisecond)},
		},
		{
			name: "expires_in exponent", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":3.6e3}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: time.Hour, Expiry: testNow.Add(time.Hour)},
		},
		{
			name: "missing expires_in uses default lifetime", contentType: ctJSON,
			body:        `{"access_token":"at1","token_type":"Bearer"}`,
			defLifetime: def,
			want:        Token{AccessToken: "at1", TokenType: "Bearer", Expiry: testNow.Add(def)},
		},
		{
			name: "missing expires_in and zero default means one hour", contentType: ctJSON,
			body: `{"access_token":"at1"}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", Expiry: testNow.Add(time.Hour)},
		},
		{
			name: "negative default lifetime means one hour", contentType: ctJSON,
			body:        `{"access_token":"at1"}`,
			defLifetime: -time.Minute,
			want:        Token{AccessToken: "at1", TokenType: "Bearer", Expiry: testNow.Add(time.Hour)},
		},
		{
			name: "null expires_in", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":null}`, defLifetime: def,
			want: Token{AccessToken: "at1", TokenType: "Bearer", Expiry: testNow.Add(def)},
		},
		{
			name: "empty string expires_in", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":""}`, defLifetime: def,
			want: Token{AccessToken: "at1", TokenType: "Bearer", Expiry: testNow.Add(def)},
		},
		{
			name: "negative expires_in treated as missing", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":-30}`, defLifetime: def,
			want: Token{AccessToken: "at1", TokenType: "Bearer", Expiry: testNow.Add(def)},
		},
		{
			name: "zero expires_in treated as missing", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":0}`, defLifetime: def,
			want: Token{AccessToken: "at1", TokenType: "Bearer", Expiry: testNow.Add(def)},
		},
		{
			name: "huge expires_in capped", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":1e300}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: MaxExpiresIn, Expiry: testNow.Add(MaxExpiresIn)},
		},
		{
			name: "out of range expires_in capped", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":"1e400"}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: MaxExpiresIn, Expiry: testNow.Add(MaxExpiresIn)},
		},
		{
			name: "tiny expires_in treated as missing", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":1e-12}`, defLifetime: def,
			want: Token{AccessToken: "at1", TokenType: "Bearer", Expiry: testNow.Add(def)},
		},
		{
			name: "non-numeric expires_in treated as missing", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":"soon"}`, defLifetime: def,
			want: Token{AccessToken: "at1", TokenType: "Bearer", Expiry: testNow.Add(def)},
		},
		{
			name: "Infinity string expires_in treated as missing", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":"Infinity"}`, defLifetime: def,
			want: Token{AccessToken: "at1", TokenType: "Bearer", Expiry: testNow.Add(def)},
		},
		{
			name: "boolean expires_in treated as missing", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":true}`, defLifetime: def,
			want: Token{AccessToken: "at1", TokenType: "Bearer", Expiry: testNow.Add(def)},
		},
		{
			name: "refresh response without refresh_token", contentType: ctJSON,
			body: `{"access_token":"at2","token_type":"Bearer","expires_in":60}`,
			want: Token{AccessToken: "at2", TokenType: "Bearer", RefreshToken: "", ExpiresIn: time.Minute, Expiry: testNow.Add(time.Minute)},
		},
		{
			name: "missing token_type is Bearer", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":60}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: time.Minute, Expiry: testNow.Add(time.Minute)},
		},
		{
			name: "lower-case bearer normalized", contentType: ctJSON,
			body: `{"access_token":"at1","token_type":"bearer","expires_in":60}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: time.Minute, Expiry: testNow.Add(time.Minute)},
		},
		{
			name: "other token_type kept", contentType: ctJSON,
			body: `{"access_token":"at1","token_type":"DPoP","expires_in":60}`,
			want: Token{AccessToken: "at1", TokenType: "DPoP", ExpiresIn: time.Minute, Expiry: testNow.Add(time.Minute)},
		},
		{
			name: "scope as array", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":60,"scope":["read","write"]}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", Scope: "read write", ExpiresIn: time.Minute, Expiry: testNow.Add(time.Minute)},
		},
		{
			name: "empty error member ignored", contentType: ctJSON,
			body: `{"access_token":"at1","expires_in":60,"error":"","error_description":null}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: time.Minute, Expiry: testNow.Add(time.Minute)},
		},
		{
			name: "form-encoded body", contentType: ctForm,
			body: `access_token=at%2Bform&token_type=bearer&expires_in=3600&refresh_token=rt1&scope=a+b`,
			want: Token{AccessToken: "at+form", TokenType: "Bearer", RefreshToken: "rt1", Scope: "a b", ExpiresIn: time.Hour, Expiry: testNow.Add(time.Hour)},
		},
		{
			name: "form-encoded body labelled JSON", contentType: ctJSON,
			body: "access_token=at1&expires_in=60\n",
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: time.Minute, Expiry: testNow.Add(time.Minute)},
		},
		{
			name: "JSON body labelled form", contentType: ctForm,
			body: `{"access_token":"at1","expires_in":60}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: time.Minute, Expiry: testNow.Add(time.Minute)},
		},
		{
			name: "JSON body labelled text/plain", contentType: ctText,
			body: `{"access_token":"at1","expires_in":60}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: time.Minute, Expiry: testNow.Add(time.Minute)},
		},
		{
			name: "JSON body without Content-Type", contentType: "",
			body: `{"access_token":"at1","expires_in":60}`,
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: time.Minute, Expiry: testNow.Add(time.Minute)},
		},
		{
			name: "JSON with BOM and whitespace", contentType: ctJSON,
			body: "\xef\xbb\xbf \n{\"access_token\":\"at1\",\"expires_in\":60}\n\n",
			want: Token{AccessToken: "at1", TokenType: "Bearer", ExpiresIn: time.Minute, Expiry: testNow.Add(time.Minute)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ParseTokenResponse(200, hdr("Content-Type", tt.contentType), []byte(tt.body), testNow, tt.defLifetime)
			if err != nil {
				t.Fatalf("ParseTokenResponse: %v", err)
			}
			if tok.Raw == nil {
				t.Errorf("Raw is nil")
			}
			if got, want := tokenFields(*tok), tokenFields(tt.want); !reflect.DeepEqual(got, want) {
				t.Errorf("token mismatch\n got %v\nwant %v", got, want)
			}
		})
	}
}

// tokenFields shows every field of a Token, secrets included, for test
// failure messages (Token's own formatting hides them).
func tokenFields(t Token) map[string]any {
	return map[string]any{
		"AccessToken": t.AccessToken, "TokenType": t.TokenType, "RefreshToken": t.RefreshToken,
		"Scope": t.Scope, "Expiry": t.Expiry, "ExpiresIn": t.ExpiresIn,
	}
}

func TestParseTokenResponseRaw(t *testing.T) {
	body := `{"access_token":"at1","expires_in":60,"id_token":"eyJhbGciOiJub25lIn0.e30.","n":1e400,"nested":{"k":[1,"x"]}}`
	tok, err := ParseTokenResponse(200, nil, []byte(body), testNow, 0)
	if err != nil {
		t.Fatalf("ParseTokenResponse: %v", err)
	}
	if got := tok.Raw["id_token"]; got != "eyJhbGciOiJub25lIn0.e30." {
		t.Errorf("Raw[id_token] = %v", got)
	}
	if got, ok := tok.Raw["expires_in"].(float64); !ok || got != 60 {
		t.Errorf("Raw[expires_in] = %#v, want float64 60", tok.Raw["expires_in"])
	}
	if got := tok.Raw["n"]; got == nil {
		t.Errorf("Raw[n] missing for an out-of-range number")
	}
	nested, _ := tok.Raw["nested"].(map[string]any)
	arr, _ := nested["k"].([]any)
	if len(arr) != 2 || arr[0] != float64(1) || arr[1] != "x" {
		t.Errorf("Raw[nested] = %#v", tok.Raw["nested"])
	}

	form, err := ParseTokenResponse(200, nil, []byte("access_token=at1&foo=bar&foo=baz"), testNow, 0)
	if err != nil {
		t.Fatalf("ParseTokenResponse(form): %v", err)
	}
	if form.Raw["foo"] != "bar" {
		t.Errorf("form Raw[foo] = %#v, want the first value", form.Raw["foo"])
	}
}

func TestParseTokenResponseErrors(t *testing.T) {
	htmlPage := `<!DOCTYPE html><html><head><title>502 Bad Gateway</title><style>body{color:red}</style>
<script>var x = 1;</script></head><body>
<h1>502   Bad
Gateway</h1><!-- upstream 10.0.0.7 --><p>The server&nbsp;is &amp; was unavailable.</p><hr><center>nginx</center></body></html>`
	longHTML := "<html><body><p>" + strings.Repeat("Something went wrong. ", 100) + "</p></body></html>"

	tests := []struct {
		name        string
		status      int
		header      http.Header
		body        string
		code        string
		class       string
		permanent   bool
		description string
		uri         string
		retryAfter  time.Duration
		excerpt     string // substring expected in Excerpt; "" means Excerpt must be empty
		malformed   bool   // errors.Is(err, ErrMalformedResponse)
	}{
		{
			name: "200 with error member", status: 200, header: hdr("Content-Type", ctJSON),
			body: `{"error":"invalid_grant","error_description":"Refresh token expired","error_uri":"https://docs.example.com/errors#invalid_grant"}`,
			code: "invalid_grant", class: "invalid_grant", permanent: true,
			description: "Refresh token expired", uri: "https://docs.example.com/errors#invalid_grant",
		},
		{
			name: "200 with error and access_token", status: 200,
			body: `{"access_token":"at1","error":"server_error"}`,
			code: "server_error", class: "server_error",
		},
		{
			name: "400 invalid_grant", status: 400,
			body: `{"error":"invalid_grant"}`, code: "invalid_grant", class: "invalid_grant", permanent: true,
		},
		{
			name: "401 invalid_client", status: 401,
			body: `{"error":"invalid_client","error_description":"Client authentication failed"}`,
			code: "invalid_client", class: "invalid_client", permanent: true, description: "Client authentication failed",
		},
		{
			name: "400 unauthorized_client", status: 400,
			body: `{"error":"unauthorized_client"}`, code: "unauthorized_client", class: "unauthorized_client", permanent: true,
		},
		{
			name: "400 unsupported_grant_type", status: 400,
			body: `{"error":"unsupported_grant_type"}`, code: "unsupported_grant_type", class: "unsupported_grant_type", permanent: true,
		},
		{
			name: "400 invalid_scope is temporary", status: 400,
			body: `{"error":"invalid_scope"}`, code: "invalid_scope", class: "invalid_scope",
		},
		{
			name: "upper-case code lower-cased", status: 400,
			body: `{"error":"INVALID_GRANT"}`, code: "invalid_grant", class: "invalid_grant", permanent: true,
		},
		{
			name: "implausible code dropped", status: 400,
			body: `{"error":"this is <not> a code"}`, code: "", class: "http_400", malformed: true,
		},
		{
			name: "error object", status: 401,
			body: `{"error":{"code":401,"message":"Request had invalid credentials.","status":"UNAUTHENTICATED"}}`,
			code: "unauthenticated", class: "unauthenticated",
			description: "Request had invalid credentials.",
		},
		{
			name: "form-encoded error", status: 400, header: hdr("Content-Type", ctForm),
			body: "error=invalid_grant&error_description=Bad+refresh+token",
			code: "invalid_grant", class: "invalid_grant", permanent: true, description: "Bad refresh token",
		},
		{
			name: "form-encoded error labelled JSON", status: 200, header: hdr("Content-Type", ctJSON),
			body: "error=invalid_client", code: "invalid_client", class: "invalid_client", permanent: true,
		},
		{
			name: "no access_token", status: 200,
			body: `{"token_type":"Bearer","expires_in":3600}`, class: "malformed_response", malformed: true,
		},
		{
			name: "empty access_token", status: 200,
			body: `{"access_token":"","expires_in":3600}`, class: "malformed_response", malformed: true,
		},
		{
			name: "numeric access_token", status: 200,
			body: `{"access_token":12345,"expires_in":3600}`, class: "malformed_response", malformed: true,
		},
		{
			name: "access_token with a newline", status: 200,
			body: `{"access_token":"at1\r\nX-Evil: 1","expires_in":3600}`, class: "malformed_response", malformed: true,
		},
		{
			name: "no access_token with a message", status: 200,
			body: `{"message":"quota exceeded"}`, class: "malformed_response", malformed: true, description: "quota exceeded",
		},
		{
			name: "empty body 200", status: 200, body: "", class: "malformed_response", malformed: true,
		},
		{
			name: "empty body 500", status: 500, body: "  \n", class: "http_500", malformed: true,
		},
		{
			name: "truncated JSON", status: 200, header: hdr("Content-Type", ctJSON),
			body: `{"access_token":"at1","expi`, class: "malformed_response", malformed: true,
		},
		{
			name: "trailing garbage after JSON", status: 200,
			body: `{"access_token":"at1"} {"access_token":"at2"}`, class: "malformed_response", malformed: true,
		},
		{
			name: "JSON array", status: 200, body: `[{"access_token":"at1"}]`, class: "malformed_response", malformed: true,
		},
		{
			name: "JSON null", status: 200, body: `null`, class: "malformed_response", malformed: true, excerpt: "null",
		},
		{
			name: "HTML page with 200", status: 200, header: hdr("Content-Type", ctHTML),
			body: htmlPage, class: "malformed_response", malformed: true,
			excerpt: "502 Bad Gateway 502 Bad Gateway The server is & was unavailable. nginx",
		},
		{
			name: "HTML page with 502", status: 502, header: hdr("Content-Type", ctHTML),
			body: htmlPage, class: "http_502",
			excerpt: "502 Bad Gateway 502 Bad Gateway The server is & was unavailable. nginx",
		},
		{
			name: "HTML page labelled JSON", status: 200, header: hdr("Content-Type", ctJSON),
			body: htmlPage, class: "malformed_response", malformed: true, excerpt: "502 Bad Gateway",
		},
		{
			name: "plain text 500", status: 500, header: hdr("Content-Type", ctText),
			body: "Internal Server Error\n", class: "http_500", excerpt: "Internal Server Error",
		},
		{
			name: "long HTML excerpt is capped", status: 500,
			body: longHTML, class: "http_500", excerpt: "Something went wrong. Something",
		},
		{
			name: "JSON 503 without error member", status: 503,
			body: `{"message":"upstream unavailable"}`, class: "http_503", description: "upstream unavailable",
		},
		{
			name: "token with non-2xx status", status: 500,
			body: `{"access_token":"at1","expires_in":60}`, class: "http_500",
		},
		{
			name: "429 with Retry-After seconds", status: 429, header: hdr("Retry-After", "7"),
			body: `{"error":"slow_down"}`, code: "slow_down", class: "slow_down", retryAfter: 7 * time.Second,
		},
		{
			name: "429 with Retry-After and no body", status: 429, header: hdr("Retry-After", "30"),
			body: ``, class: "http_429", retryAfter: 30 * time.Second, malformed: true,
		},
		{
			name: "503 with Retry-After HTTP date", status: 503,
			header: hdr("Retry-After", testNow.Add(90*time.Second).Format(http.TimeFormat)),
			body:   "Service Unavailable", class: "http_503", retryAfter: 90 * time.Second, excerpt: "Service Unavailable",
		},
		{
			name: "503 with Retry-After in the past", status: 503,
			header: hdr("Retry-After", testNow.Add(-time.Hour).Format(http.TimeFormat)),
			body:   "Service Unavailable", class: "http_503", excerpt: "Service Unavailable",
		},
		{
			name: "503 with malformed Retry-After", status: 503, header: hdr("Retry-After", "soon"),
			body: "Service Unavailable", class: "http_503", excerpt: "Service Unavailable",
		},
		{
			name: "503 with huge Retry-After", status: 503, header: hdr("Retry-After", "99999999999999999999999"),
			body: "Service Unavailable", class: "http_503", retryAfter: MaxRetryAfter, excerpt: "Service Unavailable",
		},
		{
			name: "body larger than 1 MiB", status: 200,
			body:  `{"access_token":"at1","pad":"` + strings.Repeat("x", MaxResponseSize) + `"}`,
			class: "malformed_response", malformed: true,
		},
		{
			name: "HTML larger than 1 MiB with 502", status: 502,
			body:  "<html>" + strings.Repeat("<p>oops</p>", MaxResponseSize/10),
			class: "http_502", malformed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ParseTokenResponse(tt.status, tt.header, []byte(tt.body), testNow, time.Hour)
			if err == nil {
				t.Fatalf("ParseTokenResponse succeeded with %v, want an error", tok)
			}
			if tok != nil {
				t.Errorf("token %v returned with an error", tok)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not an *Error: %v", err, err)
			}
			if e.Code != tt.code {
				t.Errorf("Code = %q, want %q", e.Code, tt.code)
			}
			if e.StatusCode != tt.status {
				t.Errorf("StatusCode = %d, want %d", e.StatusCode, tt.status)
			}
			if got := Class(err); got != tt.class {
				t.Errorf("Class = %q, want %q", got, tt.class)
			}
			if got := IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent = %v, want %v", got, tt.permanent)
			}
			if e.Description != tt.description {
				t.Errorf("Description = %q, want %q", e.Description, tt.description)
			}
			if e.URI != tt.uri {
				t.Errorf("URI = %q, want %q", e.URI, tt.uri)
			}
			if e.RetryAfter != tt.retryAfter || RetryAfter(err) != tt.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tt.retryAfter)
			}
			if got := errors.Is(err, ErrMalformedResponse); got != tt.malformed {
				t.Errorf("errors.Is(err, ErrMalformedResponse) = %v, want %v", got, tt.malformed)
			}
			if tt.excerpt == "" && e.Excerpt != "" {
				t.Errorf("Excerpt = %q, want none", e.Excerpt)
			}
			if !strings.Contains(e.Excerpt, tt.excerpt) {
				t.Errorf("Excerpt = %q, want it to contain %q", e.Excerpt, tt.excerpt)
			}
			checkExcerptShape(t, e.Excerpt)
			if msg := err.Error(); strings.Contains(msg, "\n") || msg == "" {
				t.Errorf("Error() = %q: want one non-empty line", msg)
			}
		})
	}
}

// checkExcerptShape checks the properties every excerpt has.
func checkExcerptShape(t *testing.T, ex string) {
	t.Helper()
	if n := utf8.RuneCountInString(ex); n > excerptLimit+1 {
		t.Errorf("Excerpt has %d runes, want at most %d", n, excerptLimit+1)
	}
	if !utf8.ValidString(ex) {
		t.Errorf("Excerpt %q is not valid UTF-8", ex)
	}
	if strings.ContainsAny(ex, "<>\n\r\t") || strings.Contains(ex, "  ") {
		t.Errorf("Excerpt %q contains markup or uncollapsed whitespace", ex)
	}
	if ex != strings.TrimSpace(ex) {
		t.Errorf("Excerpt %q has surrounding whitespace", ex)
	}
}

func TestParseTokenResponseExactlyMaxSize(t *testing.T) {
	prefix := `{"access_token":"at1","expires_in":60}`
	body := prefix + strings.Repeat(" ", MaxResponseSize-len(prefix))
	if len(body) != MaxResponseSize {
		t.Fatalf("body is %d bytes", len(body))
	}
	if _, err := ParseTokenResponse(200, nil, []byte(body), testNow, 0); err != nil {
		t.Fatalf("a body of exactly MaxResponseSize bytes: %v", err)
	}
	if _, err := ParseTokenResponse(200, nil, []byte(body+" "), testNow, 0); !errors.Is(err, ErrMalformedResponse) {
		t.Fatalf("a body of MaxResponseSize+1 bytes: err = %v, want ErrMalformedResponse", err)
	}
}

// Secrets a provider might echo back; each is long and random-looking, the
// way real tokens are.
const (
	echoAccess  = "AT-9fQ2xL7vB4nR8sW1zK5mP3"
	echoRefresh = "RT-3Fj8kP2mQ6wE9tY4uI0oZ7"
	echoSecret  = "CS-7Zx4Cv1Bn2Mq5Wr8Ty6Ua9"
	echoID      = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlMTIz"
	echoCode    = "AC-5Hd8Gs2Kw6Lp9Xn3Vb7Qe1"
)

var echoSecrets = []string{echoAccess, echoRefresh, echoSecret, echoID, echoCode}

func TestParseTokenResponseNeverLeaksEchoedSecrets(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"JSON error with tokens in members", 400,
			`{"error":"invalid_grant","error_description":"bad grant","access_token":"` + echoAccess + `","refresh_token":"` + echoRefresh + `","id_token":"` + echoID + `","client_secret":"` + echoSecret + `"}`},
		{"JSON error with tokens in the description", 400,
			`{"error":"invalid_grant","error_description":"refresh token ` + echoRefresh + ` for client secret ` + echoSecret + ` is revoked; access ` + echoAccess + `"}`},
		{"JSON error with a token in error_uri", 400,
			`{"error":"invalid_grant","error_uri":"https://idp.example.com/e?refresh_token=` + echoRefresh + `&code=` + echoCode + `"}`},
		{"200 with access_token and error", 200,
			`{"access_token":"` + echoAccess + `","error":"temporarily_unavailable","error_description":"issued ` + echoAccess + `"}`},
		{"JSON 500 echoing the request", 500,
			`{"message":"failed request grant_type=refresh_token&refresh_token=` + echoRefresh + `&client_secret=` + echoSecret + `"}`},
		{"form error echoing tokens", 400,
			"error=invalid_request&error_description=" + "got+refresh_token%3D" + echoRefresh + "+and+Bearer+" + echoAccess},
		{"HTML page echoing the request", 500,
			`<html><body><h1>Error</h1><pre>POST /token
Authorization: Basic ` + echoSecret + `
grant_type=refresh_token&amp;refresh_token=` + echoRefresh + `&amp;code=` + echoCode + `
{"access_token": "` + echoAccess + `", "id_token": "` + echoID + `"}
</pre></body></html>`},
		{"HTML with tokens in attributes and entities", 200,
			`<html><a href="/cb?access_token=` + echoAccess + `">x</a><p>&#x52;T-3Fj8kP2mQ6wE9tY4uI0oZ7 and ` + echoSecret + `</p></html>`},
		{"plain text with bare tokens", 502,
			"upstream said: " + echoAccess + " " + echoRefresh + " " + echoSecret + " " + echoID},
		{"text with a token in a URL path", 502,
			"see https://idp.example.com/tokens/" + echoRefresh + "/status"},
		{"escaped JSON inside HTML", 500,
			`<script>var s = "{\"refresh_token\":\"` + echoRefresh + `\"}";</script><p>{\"access_token\":\"` + echoAccess + `\"}</p>`},
		{"malformed JSON with tokens", 200,
			`{"access_token":"` + echoAccess + `","refresh_token":"` + echoRefresh + `",`},
		{"error code that is a token", 400,
			`{"error":"` + echoRefresh + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTokenResponse(tt.status, nil, []byte(tt.body), testNow, 0)
			if err == nil {
				t.Fatal("ParseTokenResponse succeeded, want an error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not an *Error", err)
			}
			assertNoSecrets(t, err, echoSecrets)
			checkExcerptShape(t, e.Excerpt)
		})
	}
}

// assertNoSecrets fails if any secret appears in err or any text field of
// its *Error.
func assertNoSecrets(t *testing.T, err error, secrets []string) {
	t.Helper()
	var e *Error
	texts := []string{err.Error()}
	if errors.As(err, &e) {
		texts = append(texts, e.Code, e.Description, e.URI, e.Excerpt)
	}
	for _, text := range texts {
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("secret %q leaked in %q", s, text)
			}
		}
	}
}

func TestSanitizeTextKeepsUsefulText(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"The refresh token has expired.", "The refresh token has expired."},
		{"see https://docs.example.com/oauth2/errors/invalid_grant", "see https://docs.example.com/oauth2/errors/invalid_grant"},
		{"Ray ID: 7f1a2b3c4d5e6f70", "Ray ID: 7f1a2b3c4d5e6f70"},
		{"a  \t\n b", "a b"},
		{"bell\x07and\x00nul", "bell and nul"},
		{"bad \xff byte", "bad \uFFFD byte"},
		{"access_token=abc123 expired", "access_token=[redacted] expired"},
		{`"client_secret" : "hunter2"`, `"client_secret" : "[redacted]"`},
		{"Authorization: Bearer abc.def", "Authorization: Bearer [redacted]"},
		{"callback?code=xyz&state=1", "callback?code=[redacted]&state=1"},
		{"token 0123456789abcdefghij0123 revoked", "token [redacted] revoked"},
	}
	for _, tt := range tests {
		if got := sanitizeText(tt.in, descriptionLimit, false, nil); got != tt.want {
			t.Errorf("sanitizeText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := sanitizeText("x<b>bold</b> &lt;tag&gt;", excerptLimit, true, nil); got != "x bold <tag>" {
		t.Errorf("markup: got %q", got)
	}
	if got := sanitizeText("the secret is s3cr3t  value", 100, false, []string{"s3cr3t  value"}); got != "the secret is [redacted]" {
		t.Errorf("collapsed secret: got %q", got)
	}
	long := strings.Repeat("é", 100)
	if got := sanitizeText(long, 60, false, nil); got != strings.Repeat("é", 60)+"…" {
		t.Errorf("truncation: got %q", got)
	}
	if got := sanitizeText(strings.Repeat("word ", 10000)+"tail", 12, false, nil); got != "word word wo…" {
		t.Errorf("truncation of a long text: got %q", got)
	}
	giant := strings.Repeat("x", 10000) + "1"
	if got := sanitizeText("a "+giant, 50, false, nil); strings.Contains(got, "xxx") {
		t.Errorf("a giant word was shown in part: %q", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"120", 2 * time.Minute},
		{" 5 ", 5 * time.Second},
		{"-5", 0},
		{"1.5", 0},
		{"86401", MaxRetryAfter},
		{testNow.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second},
		{testNow.Add(10 * time.Second).Format(time.RFC850), 10 * time.Second},
		{testNow.Add(48 * time.Hour).Format(http.TimeFormat), MaxRetryAfter},
		{testNow.Add(-time.Second).Format(http.TimeFormat), 0},
		{"tomorrow", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, testNow); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
