package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds the verifier arbitrary tokens, and arbitrary headers and
// payloads signed with the real key, so that the fuzzer reaches the claim
// checks too. It checks that verification never panics, never accepts a
// token that is not signed by a known key with the broker's own header,
// and never accepts a token whose typ is not "access".
func FuzzVerify(f *testing.F) {
	ks := testKeySet(f)
	valid, err := signToken(ks.keys[0], validClaims())
	if err != nil {
		f.Fatal(err)
	}
	payload := mustJSON(f, validClaims())
	f.Add(valid, k1Header, payload)
	f.Add(valid[:len(valid)-1]+"A", `{"alg":"none","kid":"k1","typ":"JWT"}`, payload)
	f.Add("", `{"alg":"HS256","kid":"k1","typ":"JWT"}`, strings.Replace(payload, `"access"`, `"refresh"`, 1))
	f.Add(RefreshTokenPrefix+strings.Repeat("A", 43), `{"alg":"RS256","kid":"k1"}`, `{"typ":"access","exp":1e99}`)
	f.Add("a.b.c", k1Header, `{"typ":"access","iss":"tokenkeeper","aud":"tokenkeeper","exp":-1}`)
	f.Add(strings.Repeat(".", 3), k1Header, `{"typ":"access","typ":"refresh"}`)
	f.Add(valid, k1Header, `{"typ":"\u0061ccess","iss":"tokenkeeper","aud":"tokenkeeper","sub":"u","exp":1893560145,"iat":1893553445,"nbf":1893553445,"jti":"j","auth_time":1893553445,"fam":"f","role":"admin","name":"n"}`)
	revoked := revokedSet{"f-revoked": testNow.Add(time.Hour)}

	f.Fuzz(func(t *testing.T, token, header, payload string) {
		if c, err := verifyToken(token, ks, revoked, &testParams, testNow); err == nil {
			checkAccepted(t, token, c)
		}
		signed := rawToken(header, payload, testSecret)
		if c, err := verifyToken(signed, ks, revoked, &testParams, testNow); err == nil {
			if header != k1Header {
				t.Fatalf("accepted header %q", header)
			}
			checkAccepted(t, signed, c)
		}
	})
}

// checkAccepted re-checks an accepted token independently of the verifier.
func checkAccepted(t *testing.T, token string, c *Claims) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("accepted a token with %d segments", len(parts))
	}
	if parts[0] != base64.RawURLEncoding.EncodeToString([]byte(k1Header)) {
		t.Fatalf("accepted header segment %q", parts[0])
	}
	m := hmac.New(sha256.New, testSecret)
	m.Write([]byte(parts[0] + "." + parts[1]))
	if want := base64.RawURLEncoding.EncodeToString(m.Sum(nil)); parts[2] != want {
		t.Fatal("accepted a token without the key's signature")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("accepted an undecodable payload: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatalf("accepted a payload that is not a JSON object: %v", err)
	}
	if claims["typ"] != typAccess {
		t.Fatalf("accepted typ %v", claims["typ"])
	}
	if claims["iss"] != testParams.issuer || claims["aud"] != testParams.audience {
		t.Fatalf("accepted iss %v aud %v", claims["iss"], claims["aud"])
	}
	if c == nil || c.FamilyID == "f-revoked" || !c.ExpiresAt.Add(testParams.leeway).After(testNow) {
		t.Fatalf("accepted claims %+v", c)
	}
}

// BenchmarkVerifyToken measures the pure verification path: base64,
// HMAC-SHA256, claim decoding and checks.
func BenchmarkVerifyToken(b *testing.B) {
	ks := testKeySet(b)
	tok, err := signToken(ks.keys[0], validClaims())
	if err != nil {
		b.Fatal(err)
	}
	revoked := revokedSet{"other": testNow.Add(time.Hour)}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := verifyToken(tok, ks, revoked, &testParams, testNow); err != nil {
				b.Fatal(err)
			}
		}
	})
}
