package oauthtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"time"
)

// oidcPath and jwksPath are the OpenID Connect discovery document and the
// key set, served with WithOIDC.
const (
	oidcPath = "/.well-known/openid-configuration"
	jwksPath = "/jwks"
)

// idSigner signs ID tokens with the server's RSA key.
type idSigner struct {
	key *rsa.PrivateKey
	kid string
}

// newIDSigner generates a 2048-bit RSA key and names it by a digest of its
// public half.
func newIDSigner() *idSigner {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("oauthtest: generate the ID token key: " + err.Error())
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		panic("oauthtest: encode the ID token key: " + err.Error())
	}
	sum := sha256.Sum256(der)
	return &idSigner{key: key, kid: base64.RawURLEncoding.EncodeToString(sum[:12])}
}

// idToken returns a signed ID token (OpenID Connect Core §2) for client
// clientID, issued with access token accessToken at now.
func (g *idSigner) idToken(clientID string, a approval, accessToken string, now time.Time, lifetime time.Duration) string {
	// at_hash: the left half of the SHA-256 of the access token (§3.1.3.6).
	sum := sha256.Sum256([]byte(accessToken))
	claims := map[string]any{
		"iss":            a.iss,
		"sub":            a.user.Subject,
		"aud":            clientID,
		"iat":            now.Unix(),
		"exp":            now.Add(lifetime).Unix(),
		"auth_time":      a.authTime.Unix(),
		"at_hash":        base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2]),
		"email":          a.user.Email,
		"email_verified": true,
	}
	if a.nonce != "" {
		claims["nonce"] = a.nonce
	}
	return g.sign(claims)
}

// sign returns the compact JWS (RFC 7515) of claims with RS256.
func (g *idSigner) sign(claims map[string]any) string {
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": g.kid})
	payload, err := json.Marshal(claims)
	if err != nil {
		panic("oauthtest: encode ID token claims: " + err.Error())
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, g.key, crypto.SHA256, digest[:])
	if err != nil {
		panic("oauthtest: sign ID token: " + err.Error())
	}
	return signing + "." + enc.EncodeToString(sig)
}

// jwk is the public key as a JSON Web Key (RFC 7517).
func (g *idSigner) jwk() map[string]string {
	pub := g.key.PublicKey
	return map[string]string{
		"kty": "RSA",
		"use": "sig",
		"alg": "RS256",
		"kid": g.kid,
		"n":   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
}

// handleJWKS serves GET /jwks: the ID token key set, or 404 without
// WithOIDC.
func (s *Server) handleJWKS() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.flows.signer == nil {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{s.flows.signer.jwk()}})
	}
}

// handleOIDCDiscovery serves GET /.well-known/openid-configuration, or 404
// without WithOIDC.
func (s *Server) handleOIDCDiscovery() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.flows.signer == nil {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, http.StatusOK, s.metadataFor(s.issuerFor(r)))
	}
}

// SubjectFor returns the subject (sub claim) the server gives an end user
// who signs in on the consent page with the given email address, unless it
// is the address of WithEndUser, which keeps that subject: "user-"
// followed by 16 hex digits of the SHA-256 of the lower-cased address.
func SubjectFor(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(email)))
	return "user-" + hex.EncodeToString(sum[:8])
}

// JWKSURL returns the JSON Web Key Set of the ID token key, URL()+"/jwks";
// it answers 404 without WithOIDC.
func (s *Server) JWKSURL() string { return s.URL() + jwksPath }
