package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

var (
	testNow     = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	testSecret  = bytes.Repeat([]byte{0x5a}, 32)
	otherSecret = bytes.Repeat([]byte{0x33}, 32)
	testParams  = verifyParams{issuer: "tokenkeeper", audience: "tokenkeeper", leeway: 5 * time.Second}
)

func testKeySet(t testing.TB) *keySet {
	t.Helper()
	ks, skipped := newKeySet([]*tokenkeeper.SigningKey{
		{ID: "k1", Algorithm: algHS256, Secret: testSecret, CreatedAt: testNow.Add(-time.Hour)},
	}, 3*time.Second, 15*time.Minute)
	if len(skipped) != 0 || len(ks.keys) != 1 {
		t.Fatalf("key set: %d keys, skipped %v", len(ks.keys), skipped)
	}
	return ks
}

// validClaims returns the claims of a token issued at testNow.
func validClaims() *wireClaims {
	iat := testNow.Unix()
	return &wireClaims{
		Issuer: "tokenkeeper", Audience: "tokenkeeper", Subject: "u1", Expiry: iat + 900, IssuedAt: iat,
		NotBefore: iat, ID: "j1", Type: typAccess, Fresh: true, AuthTime: iat, Family: "f1",
		Role: string(tokenkeeper.RoleAdmin), Name: "alice",
	}
}

// rawToken builds a token from header and payload JSON, signed with
// HMAC-SHA256 and secret.
func rawToken(header, payload string, secret []byte) string {
	enc := base64.RawURLEncoding
	in := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + enc.EncodeToString(m.Sum(nil))
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const k1Header = `{"alg":"HS256","kid":"k1","typ":"JWT"}`

func TestVerifyToken(t *testing.T) {
	ks := testKeySet(t)
	k1 := ks.keys[0]
	sign := func(mod func(*wireClaims)) string {
		c := validClaims()
		if mod != nil {
			mod(c)
		}
		tok, err := signToken(k1, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := sign(nil)
	parts := strings.Split(valid, ".")
	payloadJSON := mustJSON(t, validClaims())
	claimsMap := func(mod func(map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(payloadJSON), &m); err != nil {
			t.Fatal(err)
		}
		mod(m)
		return mustJSON(t, m)
	}
	tampered := func() string {
		c := validClaims()
		c.Role, c.Name = string(tokenkeeper.RoleAdmin), "mallory"
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(mustJSON(t, c))) + "." + parts[2]
	}
	// A signature whose last character carries non-zero padding bits
	// decodes to the same bytes with a lenient decoder.
	nonCanonicalSig := func() string {
		last := parts[2][len(parts[2])-1]
		i := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", last)
		alt := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[i|1]
		return parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + string(alt)
	}
	revoked := revokedSet{"f-revoked": testNow.Add(time.Minute), "f-lapsed": testNow.Add(-time.Second)}

	tests := []struct {
		name  string
		token string
		now   time.Time
		want  error // nil: accepted
	}{
		{"valid", valid, testNow, nil},
		{"valid near expiry", valid, testNow.Add(899 * time.Second), nil},
		{"expired within leeway", valid, testNow.Add(904 * time.Second), nil},
		{"expired past leeway", valid, testNow.Add(905 * time.Second), errExpired},
		{"expired long ago", valid, testNow.Add(24 * time.Hour), errExpired},
		{"iat in the future within leeway", valid, testNow.Add(-4 * time.Second), nil},
		{"iat in the future past leeway", valid, testNow.Add(-6 * time.Second), errNotYetValid},
		{"nbf in the future", sign(func(c *wireClaims) { c.NotBefore += 60 }), testNow, errNotYetValid},
		{"wrong issuer", sign(func(c *wireClaims) { c.Issuer = "evil" }), testNow, errIssuer},
		{"wrong audience", sign(func(c *wireClaims) { c.Audience = "other" }), testNow, errAudience},
		{"audience as an array", rawToken(k1Header, claimsMap(func(m map[string]any) { m["aud"] = []string{"tokenkeeper"} }), testSecret), testNow, errBadClaims},
		{"no exp", rawToken(k1Header, claimsMap(func(m map[string]any) { delete(m, "exp") }), testSecret), testNow, errBadClaims},
		{"exp as a string", rawToken(k1Header, claimsMap(func(m map[string]any) { m["exp"] = "9999999999" }), testSecret), testNow, errBadClaims},
		{"no iat", sign(func(c *wireClaims) { c.IssuedAt = 0 }), testNow, errBadClaims},
		{"lifetime over 24h", sign(func(c *wireClaims) { c.Expiry = c.IssuedAt + 25*3600 }), testNow, errBadClaims},
		{"exp before iat", sign(func(c *wireClaims) { c.Expiry = c.IssuedAt - 1 }), testNow.Add(-10 * time.Second), errBadClaims},
		{"auth_time after iat", sign(func(c *wireClaims) { c.AuthTime = c.IssuedAt + 1 }), testNow, errBadClaims},
		{"no subject", sign(func(c *wireClaims) { c.Subject = "" }), testNow, errBadClaims},
		{"no family", sign(func(c *wireClaims) { c.Family = "" }), testNow, errBadClaims},
		{"unknown role", sign(func(c *wireClaims) { c.Role = "root" }), testNow, errBadClaims},
		{"consumer role", sign(func(c *wireClaims) { c.Role = string(tokenkeeper.RoleConsumer) }), testNow, errBadClaims},
		{"typ refresh", sign(func(c *wireClaims) { c.Type = "refresh" }), testNow, errNotAccessToken},
		{"typ missing", sign(func(c *wireClaims) { c.Type = "" }), testNow, errNotAccessToken},
		{"typ in other case", sign(func(c *wireClaims) { c.Type = "Access" }), testNow, errNotAccessToken},
		{"payload not JSON", rawToken(k1Header, "not json", testSecret), testNow, errBadClaims},
		{"payload an array", rawToken(k1Header, "[1,2]", testSecret), testNow, errBadClaims},
		{"payload null", rawToken(k1Header, "null", testSecret), testNow, errNotAccessToken},
		{"refresh token as access token", RefreshTokenPrefix + strings.Repeat("A", 43), testNow, errMalformed},
		{"client secret as access token", ClientSecretPrefix + strings.Repeat("A", 43), testNow, errMalformed},
		{"alg none without signature", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"k1","typ":"JWT"}`)) + "." + parts[1] + ".", testNow, errMalformed},
		{"alg none with a signature", rawToken(`{"alg":"none","kid":"k1","typ":"JWT"}`, payloadJSON, testSecret), testNow, errAlgorithm},
		{"alg None", rawToken(`{"alg":"None","kid":"k1","typ":"JWT"}`, payloadJSON, testSecret), testNow, errAlgorithm},
		{"alg HS512", rawToken(`{"alg":"HS512","kid":"k1","typ":"JWT"}`, payloadJSON, testSecret), testNow, errAlgorithm},
		{"alg confusion RS256 with HMAC", rawToken(`{"alg":"RS256","kid":"k1","typ":"JWT"}`, payloadJSON, testSecret), testNow, errAlgorithm},
		{"alg ES256", rawToken(`{"alg":"ES256","kid":"k1","typ":"JWT"}`, payloadJSON, testSecret), testNow, errAlgorithm},
		{"unknown kid", rawToken(`{"alg":"HS256","kid":"k9","typ":"JWT"}`, payloadJSON, testSecret), testNow, errUnknownKey},
		{"no kid", rawToken(`{"alg":"HS256","typ":"JWT"}`, payloadJSON, testSecret), testNow, errUnknownKey},
		{"known kid, header reordered", rawToken(`{"kid":"k1","alg":"HS256","typ":"JWT"}`, payloadJSON, testSecret), testNow, errMalformed},
		{"known kid, extra header field", rawToken(`{"alg":"HS256","kid":"k1","typ":"JWT","jku":"https://evil"}`, payloadJSON, testSecret), testNow, errMalformed},
		{"header not JSON", rawToken(`alg`, payloadJSON, testSecret), testNow, errMalformed},
		{"tampered payload", tampered(), testNow, errSignature},
		{"tampered signature", parts[0] + "." + parts[1] + "." + strings.Repeat("A", 43), testNow, errSignature},
		{"signed with another secret", rawToken(k1Header, payloadJSON, otherSecret), testNow, errSignature},
		{"non-canonical signature encoding", nonCanonicalSig(), testNow, errMalformed},
		{"padded signature", parts[0] + "." + parts[1] + "." + parts[2] + "=", testNow, errMalformed},
		{"newline in payload", parts[0] + "." + parts[1][:10] + "\n" + parts[1][10:] + "." + parts[2], testNow, errMalformed},
		{"space in token", " " + valid, testNow, errMalformed},
		{"two segments", parts[0] + "." + parts[1], testNow, errMalformed},
		{"four segments", valid + ".x", testNow, errMalformed},
		{"empty header", "." + parts[1] + "." + parts[2], testNow, errMalformed},
		{"empty payload", parts[0] + ".." + parts[2], testNow, errMalformed},
		{"empty", "", testNow, errMissingToken},
		{"too large", valid + strings.Repeat("A", MaxTokenSize), testNow, errTooLarge},
		{"revoked family", sign(func(c *wireClaims) { c.Family = "f-revoked" }), testNow, errRevoked},
		{"revocation lapsed", sign(func(c *wireClaims) { c.Family = "f-lapsed" }), testNow, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := verifyToken(tt.token, ks, revoked, &testParams, tt.now)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if c == nil || c.UserID == "" {
					t.Fatalf("no claims")
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			if tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAUTHORIZED {
				t.Fatalf("code %q", tokenkeeper.ErrorCode(err))
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Fatal("error quotes the token")
			}
		})
	}
}

func TestVerifyTokenClaims(t *testing.T) {
	ks := testKeySet(t)
	w := validClaims()
	w.Fresh, w.FreshUntil, w.AuthTime = true, testNow.Unix()+300, testNow.Unix()-60
	tok, err := signToken(ks.keys[0], w)
	if err != nil {
		t.Fatal(err)
	}
	c, err := verifyToken(tok, ks, nil, &testParams, testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := Claims{
		UserID: "u1", Username: "alice", Role: tokenkeeper.RoleAdmin, Fresh: true,
		FreshUntil: testNow.Add(300 * time.Second), AuthTime: testNow.Add(-time.Minute),
		IssuedAt: testNow, ExpiresAt: testNow.Add(15 * time.Minute), FamilyID: "f1", ID: "j1",
	}
	if *c != want {
		t.Fatalf("claims\n got %+v\nwant %+v", *c, want)
	}
	if !strings.HasPrefix(tok, base64.RawURLEncoding.EncodeToString([]byte(k1Header))+".") {
		t.Fatalf("unexpected header in %s", tok[:40])
	}
}

func TestClaimsIsFresh(t *testing.T) {
	tests := []struct {
		name string
		c    *Claims
		now  time.Time
		want bool
	}{
		{"nil", nil, testNow, false},
		{"not fresh", &Claims{}, testNow, false},
		{"fresh, no window", &Claims{Fresh: true}, testNow, true},
		{"fresh inside window", &Claims{Fresh: true, FreshUntil: testNow.Add(time.Second)}, testNow, true},
		{"window ended", &Claims{Fresh: true, FreshUntil: testNow}, testNow, false},
		{"window without fresh", &Claims{FreshUntil: testNow.Add(time.Hour)}, testNow, false},
	}
	for _, tt := range tests {
		if got := tt.c.IsFresh(tt.now); got != tt.want {
			t.Errorf("%s: IsFresh = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestKeySetSignerAndRetirement(t *testing.T) {
	t0 := testNow
	prop, life := 3*time.Second, 15*time.Minute
	key := func(id string, at time.Time) *tokenkeeper.SigningKey {
		return &tokenkeeper.SigningKey{ID: id, Algorithm: algHS256, Secret: testSecret, CreatedAt: at}
	}
	ks, skipped := newKeySet([]*tokenkeeper.SigningKey{
		key("k2", t0.Add(time.Hour)), // newest first, as the store returns them
		{ID: "rsa", Algorithm: "RS256", Secret: testSecret, CreatedAt: t0},
		{ID: "short", Algorithm: algHS256, Secret: testSecret[:16], CreatedAt: t0},
		{ID: "bad\"id", Algorithm: algHS256, Secret: testSecret, CreatedAt: t0},
		key("k1", t0),
		nil,
	}, prop, life)
	if !equalStrings(skipped, []string{"rsa", "short", "bad\"id"}) {
		t.Fatalf("skipped %v", skipped)
	}
	if len(ks.keys) != 2 || ks.keys[0].id != "k1" || ks.keys[1].id != "k2" {
		t.Fatalf("keys out of order")
	}
	tests := []struct {
		at   time.Time
		want string
	}{
		{t0, "k1"}, // only key, too young: the oldest signs
		{t0.Add(time.Hour), "k1"},
		{t0.Add(time.Hour + prop - time.Nanosecond), "k1"},
		{t0.Add(time.Hour + prop), "k2"},
	}
	for _, tt := range tests {
		if got := ks.signer(tt.at).id; got != tt.want {
			t.Errorf("signer at %s: %s, want %s", tt.at.Sub(t0), got, tt.want)
		}
	}
	if want := t0.Add(time.Hour + 2*prop + life); !ks.keys[0].retireAt.Equal(want) {
		t.Errorf("k1 retires at %s, want %s", ks.keys[0].retireAt, want)
	}
	if !ks.keys[1].retireAt.IsZero() {
		t.Error("newest key retires")
	}
	// A token k1 signed just before k2 took over verifies until it expires
	// and is refused once k1 is retired.
	w := validClaims()
	w.IssuedAt = t0.Add(time.Hour + prop - time.Second).Unix()
	w.NotBefore, w.AuthTime, w.Expiry = w.IssuedAt, w.IssuedAt, w.IssuedAt+int64(life/time.Second)
	tok, err := signToken(ks.keys[0], w)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifyToken(tok, ks, nil, &testParams, time.Unix(w.Expiry-1, 0)); err != nil {
		t.Fatalf("old key's token refused before expiry: %v", err)
	}
	if _, err := verifyToken(tok, ks, nil, &testParams, ks.keys[0].retireAt); !errors.Is(err, errRetiredKey) {
		t.Fatalf("retired key: got %v", err)
	}
	if (*keySet)(nil).signer(t0) != nil || (&keySet{}).signer(t0) != nil {
		t.Fatal("signer of an empty key set")
	}
	if _, err := verifyToken(tok, nil, nil, &testParams, t0); !errors.Is(err, errUnknownKey) {
		t.Fatalf("nil key set: %v", err)
	}
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

func TestSignTokenTooLarge(t *testing.T) {
	ks := testKeySet(t)
	w := validClaims()
	w.Name = strings.Repeat("a", MaxTokenSize)
	if _, err := signToken(ks.keys[0], w); err == nil {
		t.Fatal("signed an oversized token")
	}
}

func TestValidRefreshToken(t *testing.T) {
	good := randomToken(RefreshTokenPrefix, 32)
	for _, tt := range []struct {
		tok  string
		want bool
	}{
		{good, true},
		{"", false},
		{good[:len(good)-1], false},
		{good + "A", false},
		{"tkcs_" + good[5:], false},
		{good[:10] + "." + good[11:], false},
		{good[:10] + "=" + good[11:], false},
	} {
		if got := validRefreshToken(tt.tok); got != tt.want {
			t.Errorf("validRefreshToken(%q) = %v", tt.tok, got)
		}
	}
}
