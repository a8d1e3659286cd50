package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// TokenStore persists the token of one TokenSource, so that a rotated
// refresh token survives a restart. A TokenSource saves every new token
// before handing it to any caller, and loads the stored token before its
// first request to the token endpoint.
//
// Implementations must be safe for concurrent use. Save must replace the
// stored token as a whole (a reader never sees half of it), and must keep a
// copy: the caller may reuse t afterwards.
type TokenStore interface {
	// Load returns the stored token, or nil and no error if none is stored.
	Load(ctx context.Context) (*oauth2.Token, error)
	// Save stores t, replacing any token stored before.
	Save(ctx context.Context, t *oauth2.Token) error
}

var (
	_ TokenStore = (*MemoryStore)(nil)
	_ TokenStore = (*FileStore)(nil)
)

// MemoryStore is a TokenStore in memory: tokens are lost when the process
// ends. It is the default store. It is safe for concurrent use.
type MemoryStore struct {
	mu  sync.Mutex
	tok *oauth2.Token // guarded by mu; nil until the first Save
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

// Load returns a copy of the stored token, or nil if none was saved.
func (m *MemoryStore) Load(ctx context.Context) (*oauth2.Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load token: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tok == nil {
		return nil, nil
	}
	return copyToken(m.tok), nil
}

// Save stores a copy of t.
func (m *MemoryStore) Save(ctx context.Context, t *oauth2.Token) error {
	if t == nil {
		return errors.New("save token: nil token")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tok = copyToken(t)
	return nil
}

// FileStore is a TokenStore that keeps the token in a JSON file. Each Save
// writes a temporary file in the same directory with mode 0600, syncs it,
// renames it over the file and syncs the directory, so the file always holds
// either the old token or the new one, even after a crash.
//
// The file holds the access and refresh tokens in plain text, readable by
// the owner only; keep it on a disk you trust. It is safe for concurrent use
// within one process; do not share one file between processes.
type FileStore struct {
	path string
	mu   sync.Mutex // serializes Save and Load on the file
}

// NewFileStore returns a FileStore that keeps its token at path. The
// directory must exist; the file is created by the first Save.
func NewFileStore(path string) (*FileStore, error) {
	if path == "" {
		return nil, errors.New("client: new file store: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("client: new file store: %w", err)
	}
	fi, err := os.Stat(filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("client: new file store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("client: new file store: %s is not a directory", filepath.Dir(abs))
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("client: new file store: %s is a directory", abs)
	}
	return &FileStore{path: abs}, nil
}

// Path returns the absolute path of the file.
func (f *FileStore) Path() string { return f.path }

// fileFormat is the version of the file's JSON layout.
const fileFormat = 1

// fileToken is the JSON layout of a FileStore file.
type fileToken struct {
	Format       int       `json:"format"`
	AccessToken  string    `json:"access_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	ExpiresIn    int64     `json:"expires_in,omitempty"`
}

// maxFileSize bounds what Load reads; a token file is a few KiB at most.
const maxFileSize = 1 << 20

// Load reads the token from the file. A missing file is not an error: it
// returns nil, nil.
func (f *FileStore) Load(ctx context.Context) (*oauth2.Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load token: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	data, err := readFileLimit(f.path, maxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("load token: %w", err)
	}
	t, err := decodeTokenFile(data)
	if err != nil {
		return nil, fmt.Errorf("load token from %s: %w", f.path, err)
	}
	return t, nil
}

// readFileLimit reads at most limit bytes of the named file and fails if it
// is larger.
func readFileLimit(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("token file is %d bytes, more than %d", fi.Size(), limit)
	}
	buf := make([]byte, fi.Size())
	n, err := fh.ReadAt(buf, 0)
	if err != nil && n != len(buf) {
		return nil, err
	}
	return buf, nil
}

// decodeTokenFile parses the content of a token file. Its errors never quote
// the content.
func decodeTokenFile(data []byte) (*oauth2.Token, error) {
	var ft fileToken
	if err := json.Unmarshal(data, &ft); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("decode: invalid JSON at offset %d", se.Offset)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("decode: field %q has the wrong type", te.Field)
		}
		return nil, errors.New("decode: invalid token file")
	}
	if ft.Format != fileFormat {
		return nil, fmt.Errorf("decode: unsupported format %d", ft.Format)
	}
	if ft.AccessToken == "" && ft.RefreshToken == "" {
		return nil, errors.New("decode: neither an access token nor a refresh token")
	}
	if ft.ExpiresIn < 0 {
		return nil, errors.New("decode: negative expires_in")
	}
	return &oauth2.Token{
		AccessToken:  ft.AccessToken,
		TokenType:    ft.TokenType,
		RefreshToken: ft.RefreshToken,
		Expiry:       ft.Expiry,
		ExpiresIn:    ft.ExpiresIn,
	}, nil
}

// Save writes t to the file atomically with mode 0600.
func (f *FileStore) Save(ctx context.Context, t *oauth2.Token) error {
	if t == nil {
		return errors.New("save token: nil token")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	data, err := json.MarshalIndent(fileToken{
		Format:       fileFormat,
		AccessToken:  t.AccessToken,
		TokenType:    t.TokenType,
		RefreshToken: t.RefreshToken,
		Expiry:       t.Expiry.UTC(),
		ExpiresIn:    t.ExpiresIn,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("save token: encode: %w", err)
	}
	data = append(data, '\n')
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := writeFileAtomic(f.path, data); err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data: temporary file, fsync, rename,
// fsync of the directory.
func writeFileAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes the file 0600 already; be explicit about it.
	if err = tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return err
	}
	return nil
}

// copyToken returns a shallow copy of t (extra fields are shared, and
// read-only by convention).
func copyToken(t *oauth2.Token) *oauth2.Token {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}
