package auth

import (
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
)

// cheapArgon2 keeps tests that hash many times fast; the production
// parameters are exercised by TestHashPassword.
var cheapArgon2 = Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestHashPassword(t *testing.T) {
	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("unexpected PHC string %q", h)
	}
	if strings.Contains(h, "correct horse") {
		t.Fatal("hash contains the password")
	}
	if !CheckPassword(h, "correct horse battery staple") {
		t.Fatal("right password refused")
	}
	if CheckPassword(h, "correct horse battery stapler") || CheckPassword(h, "") {
		t.Fatal("wrong password accepted")
	}
	h2, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if h2 == h {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	if needsRehash(h, DefaultArgon2) || !needsRehash(h, cheapArgon2) {
		t.Fatal("needsRehash")
	}
}

func TestPasswordPolicy(t *testing.T) {
	tests := []struct {
		name, pw string
		ok       bool
	}{
		{"empty", "", false},
		{"too short", "1234567", false},
		{"minimum", "12345678", true},
		{"maximum", strings.Repeat("x", MaxPasswordLength), true},
		{"too long", strings.Repeat("x", MaxPasswordLength+1), false},
		{"NUL", "12345678\x00", false},
		{"unicode", "pässwörd✓", true},
	}
	for _, tt := range tests {
		_, err := HashPasswordParams(tt.pw, cheapArgon2)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v", tt.name, err)
		}
		if err != nil {
			if tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
				t.Errorf("%s: code %s", tt.name, tokenkeeper.ErrorCode(err))
			}
			if tt.pw != "" && strings.Contains(err.Error(), tt.pw) {
				t.Errorf("%s: error quotes the password", tt.name)
			}
		}
	}
	if _, err := HashPasswordParams("12345678", Argon2Params{}); err == nil {
		t.Error("zero parameters accepted")
	}
}

func TestCheckPasswordMalformed(t *testing.T) {
	good, err := HashPasswordParams("12345678", cheapArgon2)
	if err != nil {
		t.Fatal(err)
	}
	if !CheckPassword(good, "12345678") {
		t.Fatal("good hash refused")
	}
	f := strings.Split(good, "$")
	join := func(fs ...string) string { return strings.Join(fs, "$") }
	bad := map[string]string{
		"empty":              "",
		"bcrypt":             "$2a$10$abcdefghijklmnopqrstuuO5kV0zMZ5yqJdVQhbBDRvI0sa4DuQAW",
		"argon2i":            join("", "argon2i", f[2], f[3], f[4], f[5]),
		"version 16":         join("", "argon2id", "v=16", f[3], f[4], f[5]),
		"params reordered":   join("", "argon2id", f[2], "t=1,m=64,p=1", f[4], f[5]),
		"leading zero":       join("", "argon2id", f[2], "m=064,t=1,p=1", f[4], f[5]),
		"huge memory":        join("", "argon2id", f[2], "m=4294967295,t=1,p=1", f[4], f[5]),
		"memory over bound":  join("", "argon2id", f[2], "m=1048577,t=1,p=1", f[4], f[5]),
		"zero time":          join("", "argon2id", f[2], "m=64,t=0,p=1", f[4], f[5]),
		"negative threads":   join("", "argon2id", f[2], "m=64,t=1,p=-1", f[4], f[5]),
		"padded salt":        join("", "argon2id", f[2], f[3], f[4]+"==", f[5]),
		"salt with newline":  join("", "argon2id", f[2], f[3], f[4][:4]+"\n"+f[4][4:], f[5]),
		"short salt":         join("", "argon2id", f[2], f[3], "AAAA", f[5]),
		"short key":          join("", "argon2id", f[2], f[3], f[4], "AAAAAAAA"),
		"extra field":        good + "$x",
		"missing leading $":  good[1:],
		"trailing garbage":   good + "!",
		"memory below lanes": join("", "argon2id", f[2], "m=7,t=1,p=1", f[4], f[5]),
	}
	for name, h := range bad {
		if CheckPassword(h, "12345678") {
			t.Errorf("%s: accepted", name)
		}
		if _, _, _, err := parsePHC(h); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if CheckPassword(good, strings.Repeat("1", MaxPasswordLength+1)) {
		t.Error("overlong password accepted")
	}
}

// FuzzParsePHC checks that parsing never panics and that whatever parses is
// in canonical form (it re-encodes to the same string) and within bounds.
func FuzzParsePHC(f *testing.F) {
	good, _ := HashPasswordParams("12345678", cheapArgon2)
	f.Add(good)
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g")
	f.Add("$argon2id$v=19$m=65536,t=3,p=4$$")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, key, err := parsePHC(s)
		if err != nil {
			return
		}
		if p.validate() != nil {
			t.Fatalf("parsed out-of-bounds parameters %+v", p)
		}
		if got := p.encode(salt, key); got != s {
			t.Fatalf("non-canonical input accepted:\n in %q\nout %q", s, got)
		}
	})
}
