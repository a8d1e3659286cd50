package auth

import (
	"encoding/json"
	"sync"

	"github.com/tokenkeeper/tokenkeeper"
)

// decodeClaims decodes an authenticated payload into w. It means exactly
// what json.Unmarshal(b, w) means; payloads in the plain form the broker
// writes take a fast path that allocates only the identity strings, and
// anything else (escapes, non-ASCII, unknown or case-folded keys, nulls,
// floats, negative numbers, nesting) goes to encoding/json.
func decodeClaims(b []byte, w *wireClaims, p *verifyParams) error {
	if decodeClaimsFast(b, w, p) {
		return nil
	}
	// Decode into a fresh value, so that w itself never escapes to the heap.
	v := new(wireClaims)
	err := json.Unmarshal(b, v)
	*w = *v
	return err
}

// decodeClaimsFast decodes b into w if b is a JSON object whose keys are
// the exact claim names and whose values are plain ASCII strings without
// escapes, non-negative integers or booleans, as their fields want. It
// reports false, with w partly written, for anything else.
func decodeClaimsFast(b []byte, w *wireClaims, p *verifyParams) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		key, j, ok := plainString(b, i)
		if !ok {
			return false
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		var s []byte
		var n int64
		switch string(key) {
		case "iss", "aud", "sub", "jti", "typ", "fam", "role", "name":
			s, j, ok = plainString(b, i)
		case "exp", "iat", "nbf", "auth_time", "fresh_until":
			n, j, ok = plainInt(b, i)
		case "fresh":
			w.Fresh, j, ok = plainBool(b, i)
		default:
			return false
		}
		if !ok {
			return false
		}
		switch string(key) {
		case "iss":
			w.Issuer = intern(s, p.issuer)
		case "aud":
			w.Audience = intern(s, p.audience)
		case "sub":
			w.Subject = string(s)
		case "jti":
			w.ID = string(s)
		case "typ":
			w.Type = intern(s, typAccess)
		case "fam":
			w.Family = string(s)
		case "role":
			if string(s) == string(tokenkeeper.RoleViewer) {
				w.Role = string(tokenkeeper.RoleViewer)
			} else {
				w.Role = intern(s, string(tokenkeeper.RoleAdmin))
			}
		case "name":
			w.Name = string(s)
		case "exp":
			w.Expiry = n
		case "iat":
			w.IssuedAt = n
		case "nbf":
			w.NotBefore = n
		case "auth_time":
			w.AuthTime = n
		case "fresh_until":
			w.FreshUntil = n
		}
		i = skipSpace(b, j)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

// intern returns known when s spells it, sparing an allocation.
func intern(s []byte, known string) string {
	if string(s) == known {
		return known
	}
	return string(s)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads a string at b[i] made of printable ASCII without
// escapes; it returns the bytes between the quotes and the index after the
// closing quote.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// plainInt reads a non-negative integer of at most 18 digits without
// leading zeros, fraction or exponent.
func plainInt(b []byte, i int) (int64, int, bool) {
	j := i
	var n int64
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		n = n*10 + int64(b[j]-'0')
		j++
	}
	switch {
	case j == i || j-i > 18 || (b[i] == '0' && j-i > 1):
		return 0, 0, false
	case j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E'):
		return 0, 0, false
	}
	return n, j, true
}

func plainBool(b []byte, i int) (bool, int, bool) {
	switch {
	case len(b)-i >= 4 && string(b[i:i+4]) == "true":
		return true, i + 4, true
	case len(b)-i >= 5 && string(b[i:i+5]) == "false":
		return false, i + 5, true
	}
	return false, 0, false
}

// tokenBufs holds scratch buffers for verifyToken: the token's bytes
// followed by the decoded payload.
var tokenBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2*MaxTokenSize); return &b }}
