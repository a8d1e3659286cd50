package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/tokenkeeper/tokenkeeper"
)

// Password length limits, in bytes. The minimum follows NIST SP 800-63B;
// the maximum bounds the work a single login can cause.
const (
	MinPasswordLength = 8
	MaxPasswordLength = 1024
)

// Argon2Params are the argon2id cost parameters of a password hash.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8  // lanes
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultArgon2 is the cost HashPassword uses: argon2id with 19 MiB of
// memory, 2 passes and 1 lane, a 16-byte salt and a 32-byte hash, one of the
// configurations OWASP's Password Storage Cheat Sheet recommends. It takes a
// few tens of milliseconds on current hardware. The memory cost is per
// concurrent hash, which is why Service bounds the number of hashes it runs
// at once.
var DefaultArgon2 = Argon2Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds on parameters read from a stored hash, so that a corrupted or
// planted hash cannot make a login allocate gigabytes or spin for minutes.
const (
	maxArgonMemory  = 1 << 20 // KiB (1 GiB)
	maxArgonTime    = 32
	maxArgonThreads = 64
	minArgonSalt    = 8
	maxArgonSalt    = 64
	minArgonKey     = 16
	maxArgonKey     = 64
)

// CheckPasswordPolicy reports whether pw may be set as a password: between
// MinPasswordLength and MaxPasswordLength bytes, without NUL. Returns
// EINVALID; the message never quotes the password.
func CheckPasswordPolicy(pw string) error {
	switch {
	case pw == "":
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "password is required")
	case len(pw) < MinPasswordLength:
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "password is too short: use at least %d characters", MinPasswordLength)
	case len(pw) > MaxPasswordLength:
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "password is too long: use at most %d bytes", MaxPasswordLength)
	case strings.IndexByte(pw, 0) >= 0:
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "password must not contain a NUL character")
	}
	return nil
}

// HashPassword hashes pw with argon2id and DefaultArgon2, and returns it as
// a PHC string: $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>, salt and hash
// in unpadded standard base64. It returns EINVALID when pw breaks
// CheckPasswordPolicy.
func HashPassword(pw string) (string, error) {
	return HashPasswordParams(pw, DefaultArgon2)
}

// HashPasswordParams is HashPassword with explicit parameters.
func HashPasswordParams(pw string, p Argon2Params) (string, error) {
	if err := CheckPasswordPolicy(pw); err != nil {
		return "", err
	}
	if err := p.validate(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return p.encode(salt, key), nil
}

// CheckPassword reports whether pw matches the PHC string hash made by
// HashPassword. It compares in constant time and returns false for a
// malformed hash or out-of-bounds parameters, and for an empty or overlong
// password.
func CheckPassword(hash, pw string) bool {
	p, salt, want, err := parsePHC(hash)
	if err != nil || pw == "" || len(pw) > MaxPasswordLength {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// needsRehash reports whether hash was made with parameters other than p.
func needsRehash(hash string, p Argon2Params) bool {
	q, salt, key, err := parsePHC(hash)
	if err != nil {
		return true
	}
	return q.Memory != p.Memory || q.Time != p.Time || q.Threads != p.Threads ||
		uint32(len(salt)) != p.SaltLen || uint32(len(key)) != p.KeyLen
}

func (p Argon2Params) validate() error {
	if p.Memory < 8*uint32(p.Threads) || p.Memory > maxArgonMemory || p.Time < 1 || p.Time > maxArgonTime ||
		p.Threads < 1 || p.Threads > maxArgonThreads || p.SaltLen < minArgonSalt || p.SaltLen > maxArgonSalt ||
		p.KeyLen < minArgonKey || p.KeyLen > maxArgonKey {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "invalid argon2id parameters m=%d t=%d p=%d salt=%d key=%d",
			p.Memory, p.Time, p.Threads, p.SaltLen, p.KeyLen)
	}
	return nil
}

func (p Argon2Params) encode(salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

var errBadHash = tokenkeeper.Errorf(tokenkeeper.EINVALID, "malformed password hash")

// parsePHC parses an argon2id PHC string strictly: the exact field order
// HashPassword writes, version 19, decimal parameters without sign or
// leading zeros, canonical unpadded base64, and parameters within bounds.
func parsePHC(s string) (p Argon2Params, salt, key []byte, err error) {
	if len(s) > 512 {
		return p, nil, nil, errBadHash
	}
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, errBadHash
	}
	ps := strings.Split(f[3], ",")
	if len(ps) != 3 {
		return p, nil, nil, errBadHash
	}
	m, ok1 := phcUint(ps[0], "m=", maxArgonMemory)
	t, ok2 := phcUint(ps[1], "t=", maxArgonTime)
	th, ok3 := phcUint(ps[2], "p=", maxArgonThreads)
	if !ok1 || !ok2 || !ok3 {
		return p, nil, nil, errBadHash
	}
	enc := base64.RawStdEncoding.Strict()
	if salt, err = enc.DecodeString(f[4]); err != nil || strings.ContainsAny(f[4], "\r\n") {
		return p, nil, nil, errBadHash
	}
	if key, err = enc.DecodeString(f[5]); err != nil || strings.ContainsAny(f[5], "\r\n") {
		return p, nil, nil, errBadHash
	}
	p = Argon2Params{Memory: m, Time: t, Threads: uint8(th), SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))}
	if p.validate() != nil {
		return Argon2Params{}, nil, nil, errBadHash
	}
	return p, salt, key, nil
}

// phcUint parses "<prefix><decimal>" with 1 <= value <= max.
func phcUint(s, prefix string, max uint32) (uint32, bool) {
	d, ok := strings.CutPrefix(s, prefix)
	if !ok || d == "" || len(d) > 10 || d[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(d, 10, 32)
	if err != nil || v < 1 || v > uint64(max) {
		return 0, false
	}
	return uint32(v), true
}
