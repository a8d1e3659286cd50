package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func mustKey(t testing.TB) []byte {
	t.Helper()
	k, err := NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newTestRing(t testing.TB, ids ...uint32) *Ring {
	t.Helper()
	r := NewRing()
	for _, id := range ids {
		if err := r.Add(id, mustKey(t)); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestSealOpenRoundTrip(t *testing.T) {
	r := newTestRing(t, 1)
	for _, pt := range [][]byte{nil, []byte(""), []byte("s3cr3t-refresh-token"), bytes.Repeat([]byte{0xff}, 10000)} {
		ad := AD("credentials", "abc", "refresh_token")
		ct, err := r.Seal(pt, ad)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != len(pt)+Overhead {
			t.Errorf("len(ct) = %d, want %d", len(ct), len(pt)+Overhead)
		}
		if len(pt) > 4 && bytes.Contains(ct, pt) {
			t.Error("ciphertext contains the plaintext")
		}
		got, err := r.Open(ct, ad)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pt) {
			t.Errorf("Open = %q, want %q", got, pt)
		}
		if id, err := KeyID(ct); err != nil || id != 1 {
			t.Errorf("KeyID = %d, %v; want 1", id, err)
		}
	}
}

func TestSealIsRandomized(t *testing.T) {
	r := newTestRing(t, 1)
	ad := AD("t", "r", "f")
	a, _ := r.Seal([]byte("same"), ad)
	b, _ := r.Seal([]byte("same"), ad)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are equal: nonce reuse")
	}
}

func TestOpenWrongPlace(t *testing.T) {
	r := newTestRing(t, 1)
	ct, err := r.Seal([]byte("client-secret-value"), AD("credentials", "row1", "client_secret"))
	if err != nil {
		t.Fatal(err)
	}
	for name, ad := range map[string][]byte{
		"other row":   AD("credentials", "row2", "client_secret"),
		"other field": AD("credentials", "row1", "refresh_token"),
		"other table": AD("api_keys", "row1", "client_secret"),
		"empty":       nil,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := r.Open(ct, ad)
			if !errors.Is(err, ErrOpen) {
				t.Fatalf("Open = %v, want ErrOpen", err)
			}
			if strings.Contains(err.Error(), "client-secret-value") {
				t.Fatal("error contains the plaintext")
			}
		})
	}
}

func TestADIsUnambiguous(t *testing.T) {
	// Stores use hex row ids and fixed field names, so '|' never occurs
	// inside a component; the layout itself is part of the format.
	if got := string(AD("credentials", "0a1b", "client_secret")); got != "tokenkeeper/v1|credentials|0a1b|client_secret" {
		t.Fatalf("AD = %q", got)
	}
}

func TestOpenTampered(t *testing.T) {
	r := newTestRing(t, 1, 2)
	ad := AD("credentials", "x", "access_token")
	ct, _ := r.Seal([]byte("access-token"), ad)
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x01
		_, err := r.Open(bad, ad)
		if err == nil {
			t.Fatalf("flipping byte %d still opens", i)
		}
		if !errors.Is(err, ErrOpen) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("flipping byte %d: unexpected error %v", i, err)
		}
	}
	if _, err := r.Open(ct[:len(ct)-1], ad); !errors.Is(err, ErrOpen) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := r.Open(ct[:10], ad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short: %v", err)
	}
}

func TestRingRotation(t *testing.T) {
	r := newTestRing(t, 1)
	ad := AD("credentials", "x", "refresh_token")
	old, _ := r.Seal([]byte("old"), ad)
	if err := r.Add(2, mustKey(t)); err != nil {
		t.Fatal(err)
	}
	if id, ok := r.Active(); !ok || id != 2 {
		t.Fatalf("Active = %d, %v; want 2", id, ok)
	}
	// An id cannot be reused for another key.
	if err := r.Add(1, mustKey(t)); err == nil {
		t.Fatal("Add with a different key under an existing id succeeded")
	}
	newer, _ := r.Seal([]byte("new"), ad)
	if id, _ := KeyID(newer); id != 2 {
		t.Fatalf("new seal uses key %d, want 2", id)
	}
	if pt, err := r.Open(old, ad); err != nil || string(pt) != "old" {
		t.Fatalf("old ciphertext: %q, %v", pt, err)
	}

	// A ring without key 2 reports which key it lacks.
	other := newTestRing(t, 1)
	_, err := other.Open(newer, ad)
	var uk *UnknownKeyError
	if !errors.Is(err, ErrUnknownKey) || !errors.As(err, &uk) || uk.ID != 2 {
		t.Fatalf("Open with missing key = %v", err)
	}
}

func TestRingClone(t *testing.T) {
	r := newTestRing(t, 1)
	c := r.Clone()
	if err := c.Add(2, mustKey(t)); err != nil {
		t.Fatal(err)
	}
	if r.Has(2) || r.Len() != 1 {
		t.Fatal("Clone shares state with the original")
	}
	ct, _ := r.Seal([]byte("x"), nil)
	if _, err := c.Open(ct, nil); err != nil {
		t.Fatalf("clone cannot open original's ciphertext: %v", err)
	}
}

func TestRingEmptyAndBadKeys(t *testing.T) {
	r := NewRing()
	if _, err := r.Seal([]byte("x"), nil); !errors.Is(err, ErrNoActiveKey) {
		t.Fatalf("Seal on empty ring = %v", err)
	}
	if err := r.Add(0, mustKey(t)); err == nil {
		t.Fatal("Add(0) succeeded")
	}
	if err := r.Add(1, make([]byte, 16)); err == nil {
		t.Fatal("Add with a 16-byte key succeeded")
	}
	k := mustKey(t)
	if err := r.Add(3, k); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(3, bytes.Clone(k)); err != nil {
		t.Fatalf("re-adding the same key: %v", err)
	}
}

func TestRingConcurrent(t *testing.T) {
	r := newTestRing(t, 1)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				if i == 0 && j%50 == 0 {
					_ = r.Add(uint32(2+j/50), mustKey(t))
				}
				ad := AD("t", "r", "f")
				ct, err := r.Seal([]byte("v"), ad)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := r.Open(ct, ad); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestWrapUnwrap(t *testing.T) {
	master, dk := mustKey(t), mustKey(t)
	w, err := WrapKey(master, 7, dk)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(w, dk) {
		t.Fatal("wrapped key contains the data key")
	}
	got, err := UnwrapKey(master, 7, w)
	if err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("UnwrapKey = %v", err)
	}
	_, err = UnwrapKey(mustKey(t), 7, w)
	if !errors.Is(err, ErrMasterKeyMismatch) || err.Error() != "master key does not match this database" {
		t.Fatalf("wrong master: %v", err)
	}
	if _, err := UnwrapKey(master, 8, w); !errors.Is(err, ErrMasterKeyMismatch) {
		t.Fatalf("wrapped key moved to another id: %v", err)
	}
	if _, err := UnwrapKey(master, 7, w[:20]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := WrapKey(master[:5], 1, dk); err == nil {
		t.Fatal("WrapKey with a short master key succeeded")
	}
}

func TestParseMasterKey(t *testing.T) {
	key := mustKey(t)
	for _, s := range []string{
		base64.StdEncoding.EncodeToString(key),
		base64.RawStdEncoding.EncodeToString(key),
		base64.URLEncoding.EncodeToString(key),
		"  " + base64.StdEncoding.EncodeToString(key) + "\n",
	} {
		got, err := ParseMasterKey(s)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("ParseMasterKey(%q) = %v", s, err)
		}
	}
	secretish := "this-is-not-base64!!!-but-could-be-a-secret"
	for name, tc := range map[string]struct{ in, want string }{
		"empty":     {"", "empty"},
		"bad":       {secretish, "not valid base64"},
		"too short": {base64.StdEncoding.EncodeToString(key[:16]), "must decode to 32 bytes, got 16"},
		"too long":  {base64.StdEncoding.EncodeToString(append(key, 1)), "got 33"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseMasterKey(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if tc.in != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.in)) {
				t.Fatal("error quotes the key")
			}
		})
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	key, err := CreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %#o, want 0600", fi.Mode().Perm())
	}
	content, _ := os.ReadFile(path)
	if string(content) != EncodeMasterKey(key)+"\n" {
		t.Fatalf("content = %q", content)
	}
	got, err := ReadKeyFile(path)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("ReadKeyFile = %v", err)
	}

	// Never overwrite.
	if _, err := CreateKeyFile(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second CreateKeyFile = %v, want fs.ErrExist", err)
	}
	if again, _ := ReadKeyFile(path); !bytes.Equal(again, key) {
		t.Fatal("key file changed")
	}

	if runtime.GOOS != "windows" {
		if err := os.Chmod(path, 0o640); err != nil {
			t.Fatal(err)
		}
		_, err := ReadKeyFile(path)
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("group-readable key file: %v", err)
		}
		if strings.Contains(err.Error(), EncodeMasterKey(key)) {
			t.Fatal("error quotes the key")
		}
	}

	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(bad); err == nil || !strings.Contains(err.Error(), "base64") {
		t.Fatalf("bad key file: %v", err)
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing key file: %v", err)
	}
	if _, err := ReadKeyFile(dir); err == nil {
		t.Fatal("ReadKeyFile of a directory succeeded")
	}
}

func FuzzOpen(f *testing.F) {
	r := NewRing()
	if err := r.Add(1, bytes.Repeat([]byte{1}, KeySize)); err != nil {
		f.Fatal(err)
	}
	ad := AD("credentials", "id", "field")
	good, _ := r.Seal([]byte("hello"), ad)
	f.Add(good, ad)
	f.Add([]byte{}, []byte{})
	f.Add([]byte{1, 0, 0, 0, 1}, ad)
	f.Add([]byte{2, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, ad)
	f.Fuzz(func(t *testing.T, ct, ad []byte) {
		pt, err := r.Open(ct, ad)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrOpen) {
				t.Fatalf("unexpected error class: %v", err)
			}
			if pt != nil {
				t.Fatal("plaintext returned with an error")
			}
			return
		}
		// Anything that opens must have been sealed by us: re-sealing and
		// opening gives the same plaintext.
		again, err := r.Seal(pt, ad)
		if err != nil {
			t.Fatal(err)
		}
		pt2, err := r.Open(again, ad)
		if err != nil || !bytes.Equal(pt, pt2) {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

func FuzzParseMasterKey(f *testing.F) {
	f.Add(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, KeySize)))
	f.Add(base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, KeySize)))
	f.Add("")
	f.Add("  \n")
	f.Add("not base64 at all")
	f.Add(base64.StdEncoding.EncodeToString([]byte("short")))
	f.Fuzz(func(t *testing.T, s string) {
		key, err := ParseMasterKey(s)
		if err != nil {
			if key != nil {
				t.Fatal("key returned with an error")
			}
			if !strings.HasPrefix(err.Error(), "master key ") {
				t.Fatalf("unexpected error form: %v", err)
			}
			return
		}
		if len(key) != KeySize {
			t.Fatalf("accepted a %d-byte key", len(key))
		}
		// What parses, re-encodes to a form that parses to the same key.
		again, err := ParseMasterKey(EncodeMasterKey(key))
		if err != nil || !bytes.Equal(again, key) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
