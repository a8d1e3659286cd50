package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// This file holds the broker's own JWTs: compact JWS with HMAC-SHA256,
// written by hand rather than with a general JWT library. The broker is the
// only issuer and the only verifier of these tokens, so verification can be
// narrower than any library allows: the header segment of a token must be,
// byte for byte, the header the broker writes for one of its keys, which
// pins the algorithm (no "none", no RS/ES, no algorithm confusion), requires
// a known kid and leaves no header JSON to parse on the hot path. Claims are
// parsed only after the signature has been checked.

// MaxTokenSize is the largest access token Verify looks at, in bytes.
const MaxTokenSize = 4096

const (
	algHS256 = "HS256"
	// typAccess is the "typ" claim of an access token. Refresh tokens are
	// opaque strings, not JWTs, so they can never pass as access tokens.
	typAccess = "access"
	// maxAccessLifetime bounds exp-iat of any accepted token, whatever the
	// configuration.
	maxAccessLifetime = 24 * time.Hour
	// minKeySize is the smallest HMAC key accepted from the store.
	minKeySize = 32
	sigLen     = 43 // base64url length of a 32-byte HMAC-SHA256
)

// b64 is the only base64 flavour of a token: unpadded base64url, rejecting
// non-zero trailing bits. (Characters outside the alphabet, CR and LF among
// them, are rejected before decoding.)
var b64 = base64.RawURLEncoding.Strict()

// b64Alphabet marks the bytes allowed in a token segment.
var b64Alphabet = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = true
	}
	return t
}()

// Verification failures. Each is an EUNAUTHORIZED *tokenkeeper.Error whose
// message names the reason without quoting the token. They are allocated
// once, so rejecting a token costs nothing on the heap.
var (
	errMissingToken   = verifyError("access token is required")
	errTooLarge       = verifyError("access token is too large")
	errMalformed      = verifyError("malformed access token")
	errAlgorithm      = verifyError("access token uses an unsupported signing algorithm")
	errUnknownKey     = verifyError("access token is signed with an unknown key")
	errRetiredKey     = verifyError("access token is signed with a retired key")
	errSignature      = verifyError("access token signature is invalid")
	errNotAccessToken = verifyError("not an access token")
	errIssuer         = verifyError("access token has the wrong issuer")
	errAudience       = verifyError("access token has the wrong audience")
	errExpired        = verifyError("access token has expired")
	errNotYetValid    = verifyError("access token is not valid yet")
	errBadClaims      = verifyError("access token claims are invalid")
	errRevoked        = verifyError("access token has been revoked")
)

func verifyError(msg string) *tokenkeeper.Error {
	return &tokenkeeper.Error{Code: tokenkeeper.EUNAUTHORIZED, Message: msg}
}

// wireClaims is the JSON payload of an access token. Times are NumericDate
// (seconds since the epoch).
type wireClaims struct {
	Issuer     string `json:"iss"`
	Audience   string `json:"aud"`
	Subject    string `json:"sub"`
	Expiry     int64  `json:"exp"`
	IssuedAt   int64  `json:"iat"`
	NotBefore  int64  `json:"nbf"`
	ID         string `json:"jti"`
	Type       string `json:"typ"`
	Fresh      bool   `json:"fresh"`
	FreshUntil int64  `json:"fresh_until,omitempty"`
	AuthTime   int64  `json:"auth_time"`
	Family     string `json:"fam"`
	Role       string `json:"role"`
	Name       string `json:"name"`
}

// hmacKey is one signing key as the verifier holds it.
type hmacKey struct {
	id        string
	header    string // the encoded header segment of tokens signed with this key
	secret    []byte
	createdAt time.Time
	// retireAt is when tokens signed with this key stop being accepted:
	// when every token it signed has expired. Zero while it may still sign.
	retireAt time.Time
	macs     sync.Pool // of hash.Hash keyed with secret
}

func newHMACKey(id string, secret []byte, createdAt time.Time) *hmacKey {
	k := &hmacKey{id: id, header: encodeHeader(id), secret: secret, createdAt: createdAt}
	k.macs.New = func() any { return hmac.New(sha256.New, k.secret) }
	return k
}

// encodeHeader returns the header segment the broker writes for kid.
func encodeHeader(kid string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"` + algHS256 + `","kid":"` + kid + `","typ":"JWT"}`))
}

// mac appends HMAC-SHA256(secret, msg) to dst.
func (k *hmacKey) mac(dst, msg []byte) []byte {
	h := k.macs.Get().(hash.Hash)
	h.Reset()
	h.Write(msg)
	dst = h.Sum(dst)
	k.macs.Put(h)
	return dst
}

// validKeyID reports whether id can be a kid: 1 to 64 base64url characters,
// so that it needs no JSON escaping.
func validKeyID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !b64Alphabet[id[i]] {
			return false
		}
	}
	return true
}

// keySet is an immutable snapshot of the signing keys.
type keySet struct {
	keys     []*hmacKey // oldest first
	byHeader map[string]*hmacKey
	// propagation is how long a new key waits before it signs.
	propagation time.Duration
}

// newKeySet builds the verifier's view of the stored keys. A key signs once
// it has been in the store for propagation, so that every replica has
// loaded it before the first token signed with it reaches them; until one
// key is that old, the oldest key signs. A key superseded by a newer one
// keeps verifying for lifetime after its successor started signing, and is
// retired after that. Keys that are unusable (not HS256, short secret, bad
// id) are skipped and reported in skipped.
func newKeySet(src []*tokenkeeper.SigningKey, propagation, lifetime time.Duration) (ks *keySet, skipped []string) {
	ks = &keySet{byHeader: make(map[string]*hmacKey, len(src)), propagation: propagation}
	for _, k := range src {
		switch {
		case k == nil:
			continue
		case k.Algorithm != algHS256 || len(k.Secret) < minKeySize || !validKeyID(k.ID):
			skipped = append(skipped, k.ID)
			continue
		}
		ks.keys = append(ks.keys, newHMACKey(k.ID, k.Secret, k.CreatedAt))
	}
	slices.SortFunc(ks.keys, func(a, b *hmacKey) int {
		if c := a.createdAt.Compare(b.createdAt); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	ks.keys = slices.CompactFunc(ks.keys, func(a, b *hmacKey) bool { return a.id == b.id })
	for i, k := range ks.keys {
		if i+1 < len(ks.keys) {
			// The successor signs from its createdAt+propagation at the
			// latest; tokens of k live at most lifetime after that. One more
			// propagation covers replicas whose clocks differ a little.
			k.retireAt = ks.keys[i+1].createdAt.Add(2*propagation + lifetime)
		}
		ks.byHeader[k.header] = k
	}
	return ks, skipped
}

// signer returns the key that signs at now, nil if there is none.
func (ks *keySet) signer(now time.Time) *hmacKey {
	if ks == nil || len(ks.keys) == 0 {
		return nil
	}
	for i := len(ks.keys) - 1; i >= 0; i-- {
		if !now.Before(ks.keys[i].createdAt.Add(ks.propagation)) {
			return ks.keys[i]
		}
	}
	return ks.keys[0]
}

// signToken returns the compact JWS of c signed with k.
func signToken(k *hmacKey, c *wireClaims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	n := len(k.header) + 1 + base64.RawURLEncoding.EncodedLen(len(payload))
	buf := make([]byte, 0, n+1+sigLen)
	buf = append(buf, k.header...)
	buf = append(buf, '.')
	buf = base64.RawURLEncoding.AppendEncode(buf, payload)
	var sum [sha256.Size]byte
	mac := k.mac(sum[:0], buf)
	buf = append(buf, '.')
	buf = base64.RawURLEncoding.AppendEncode(buf, mac)
	if len(buf) > MaxTokenSize {
		return "", fmt.Errorf("sign token: token is %d bytes, more than %d", len(buf), MaxTokenSize)
	}
	return string(buf), nil
}

// verifyParams are the fixed expectations of verifyToken.
type verifyParams struct {
	issuer, audience string
	leeway           time.Duration
}

// revokedSet maps revoked family ids to the time until which their access
// tokens are rejected.
type revokedSet map[string]time.Time

// verifyToken checks tok completely: size, shape, strict base64url, header
// equal to that of a known, unretired key, HMAC, then the claims: typ
// "access", iss, aud, exp present and not past (with leeway), nbf and iat
// not in the future, a bounded lifetime, the identity claims present, and
// the family not revoked.
func verifyToken(tok string, ks *keySet, revoked revokedSet, p *verifyParams, now time.Time) (*Claims, error) {
	if tok == "" {
		return nil, errMissingToken
	}
	if len(tok) > MaxTokenSize {
		return nil, errTooLarge
	}
	dot1, dot2 := -1, -1
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if b64Alphabet[c] {
			continue
		}
		if c != '.' {
			return nil, errMalformed
		}
		switch {
		case dot1 < 0:
			dot1 = i
		case dot2 < 0:
			dot2 = i
		default:
			return nil, errMalformed
		}
	}
	if dot2 < 0 || dot1 == 0 || dot2 == dot1+1 || len(tok)-dot2-1 != sigLen {
		return nil, errMalformed
	}
	if ks == nil {
		return nil, errUnknownKey
	}
	k := ks.byHeader[tok[:dot1]]
	if k == nil {
		return nil, headerError(tok[:dot1], ks)
	}
	if !k.retireAt.IsZero() && !now.Before(k.retireAt) {
		return nil, errRetiredKey
	}
	bp := tokenBufs.Get().(*[]byte)
	defer tokenBufs.Put(bp)
	buf := append((*bp)[:0], tok...)
	var sig [32]byte
	if n, err := b64.Decode(sig[:], buf[dot2+1:]); err != nil || n != len(sig) {
		return nil, errMalformed
	}
	var sum [sha256.Size]byte
	if !hmac.Equal(k.mac(sum[:0], buf[:dot2]), sig[:]) {
		return nil, errSignature
	}

	// Authenticated: the payload was written by a holder of the key.
	enc := buf[dot1+1 : dot2]
	payload := buf[len(buf) : len(buf)+b64.DecodedLen(len(enc))]
	n, err := b64.Decode(payload, enc)
	if err != nil {
		return nil, errMalformed
	}
	var w wireClaims
	if err := decodeClaims(payload[:n], &w, p); err != nil {
		return nil, errBadClaims
	}
	return checkClaims(&w, revoked, p, now)
}

// leewaySeconds is the leeway in whole seconds, rounded up: exp, nbf and
// iat are whole seconds.
func (p *verifyParams) leewaySeconds() int64 {
	return int64((p.leeway + time.Second - 1) / time.Second)
}

// checkClaims validates authenticated claims and converts them.
func checkClaims(w *wireClaims, revoked revokedSet, p *verifyParams, now time.Time) (*Claims, error) {
	if w.Type != typAccess {
		return nil, errNotAccessToken
	}
	if w.Issuer != p.issuer {
		return nil, errIssuer
	}
	if w.Audience != p.audience {
		return nil, errAudience
	}
	if w.Expiry <= 0 || w.IssuedAt <= 0 || w.NotBefore <= 0 || w.AuthTime <= 0 ||
		w.Expiry <= w.IssuedAt || w.Expiry-w.IssuedAt > int64(maxAccessLifetime/time.Second) ||
		w.AuthTime > w.IssuedAt || w.FreshUntil < 0 ||
		w.Subject == "" || w.Family == "" || w.ID == "" || w.Name == "" {
		return nil, errBadClaims
	}
	role := tokenkeeper.Role(w.Role)
	if role != tokenkeeper.RoleAdmin && role != tokenkeeper.RoleViewer {
		return nil, errBadClaims
	}
	nowSec := now.Unix()
	leeway := p.leewaySeconds()
	if nowSec >= w.Expiry+leeway {
		return nil, errExpired
	}
	if w.NotBefore > nowSec+leeway || w.IssuedAt > nowSec+leeway {
		return nil, errNotYetValid
	}
	if until, ok := revoked[w.Family]; ok && now.Before(until) {
		return nil, errRevoked
	}
	c := &Claims{
		UserID:    w.Subject,
		Username:  w.Name,
		Role:      role,
		Fresh:     w.Fresh,
		AuthTime:  time.Unix(w.AuthTime, 0).UTC(),
		IssuedAt:  time.Unix(w.IssuedAt, 0).UTC(),
		ExpiresAt: time.Unix(w.Expiry, 0).UTC(),
		FamilyID:  w.Family,
		ID:        w.ID,
	}
	if w.FreshUntil > 0 {
		c.FreshUntil = time.Unix(w.FreshUntil, 0).UTC()
	}
	return c, nil
}

// headerError explains why a header segment matched no key; it runs only
// on the failure path.
func headerError(seg string, ks *keySet) error {
	raw, err := b64.DecodeString(seg)
	if err != nil {
		return errMalformed
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return errMalformed
	}
	if h.Alg != algHS256 {
		return errAlgorithm
	}
	for _, k := range ks.keys {
		if k.id == h.Kid && h.Kid != "" {
			return errMalformed // a known key, but not the header the broker writes
		}
	}
	return errUnknownKey
}
