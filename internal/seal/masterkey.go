package seal

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
)

// ParseMasterKey decodes a base64 master key (standard or URL alphabet, with
// or without padding; surrounding white space is ignored) and checks that it
// is KeySize bytes. The error never quotes the key.
func ParseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("master key is empty: expected 32 random bytes in base64 (e.g. from `openssl rand -base64 32`)")
	}
	var key []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("master key is not valid base64: expected 32 random bytes in base64 (e.g. from `openssl rand -base64 32`)")
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("master key must decode to %d bytes, got %d", KeySize, len(key))
	}
	return key, nil
}

// EncodeMasterKey returns the base64 form of a master key, as ParseMasterKey
// reads it.
func EncodeMasterKey(key []byte) string {
	return base64.StdEncoding.EncodeToString(key)
}

// ReadKeyFile reads a master key file: the base64 key and optional trailing
// white space. On Unix it refuses a file that the group or others may read
// or write, since anyone who can read it can open every secret.
func ReadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read master key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read master key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read master key file %s: not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("read master key file %s: its mode %#o lets the group or others access it; run `chmod 600 %s`", path, fi.Mode().Perm(), path)
	}
	b := make([]byte, 4096)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return nil, fmt.Errorf("read master key file %s: %w", path, err)
	}
	if n == len(b) {
		return nil, fmt.Errorf("read master key file %s: file is too large to be a key", path)
	}
	key, err := ParseMasterKey(string(b[:n]))
	clear(b)
	if err != nil {
		return nil, fmt.Errorf("read master key file %s: %w", path, err)
	}
	return key, nil
}

// CreateKeyFile generates a new master key and writes it, base64 and a
// newline, to a new file at path with mode 0600. It fails if the file
// exists (the error matches fs.ErrExist): an existing key is never
// overwritten.
func CreateKeyFile(path string) ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("create master key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create master key file %s: %w (refusing to overwrite a key)", path, fs.ErrExist)
		}
		return nil, fmt.Errorf("create master key file: %w", err)
	}
	_, err = f.WriteString(EncodeMasterKey(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("create master key file %s: %w", path, err)
	}
	return key, nil
}
