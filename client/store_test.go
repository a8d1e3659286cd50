package client

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestMemoryStore(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryStore()
	if tok, err := m.Load(ctx); tok != nil || err != nil {
		t.Fatalf("empty store: %v, %v", tok, err)
	}
	in := &oauth2.Token{AccessToken: "a", RefreshToken: "r", Expiry: epoch}
	if err := m.Save(ctx, in); err != nil {
		t.Fatal(err)
	}
	in.AccessToken = "changed by the caller"
	out, _ := m.Load(ctx)
	if out.AccessToken != "a" || out.RefreshToken != "r" {
		t.Fatalf("loaded %+v", out)
	}
	out.RefreshToken = "changed"
	if again, _ := m.Load(ctx); again.RefreshToken != "r" {
		t.Fatal("Load returned the stored token itself")
	}
	if err := m.Save(ctx, nil); err == nil {
		t.Fatal("Save(nil) succeeded")
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Load(canceled); err == nil {
		t.Fatal("Load with a canceled context succeeded")
	}
}

func TestFileStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "token.json")
	fs, err := NewFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := fs.Load(ctx); tok != nil || err != nil {
		t.Fatalf("missing file: %v, %v", tok, err)
	}
	in := &oauth2.Token{AccessToken: "at", TokenType: "Bearer", RefreshToken: "rt", Expiry: epoch.In(time.FixedZone("X", 3600)), ExpiresIn: 3600}
	for i := range 3 {
		in.RefreshToken = "rt-" + itoa(i)
		if err := fs.Save(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	out, err := fs.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out.AccessToken != "at" || out.RefreshToken != "rt-2" || out.TokenType != "Bearer" || !out.Expiry.Equal(epoch) || out.ExpiresIn != 3600 {
		t.Fatalf("loaded %+v", out)
	}
	// No temporary file is left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %v", entries)
	}
	// A new store on the same path sees the token.
	fs2, _ := NewFileStore(path)
	if out, _ := fs2.Load(ctx); out == nil || out.RefreshToken != "rt-2" {
		t.Fatal("a second store does not see the file")
	}
}

func TestFileStoreKeepsModeWhenReplacingAWiderFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token.json")
	if err := os.WriteFile(path, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs, _ := NewFileStore(path)
	if err := fs.Save(context.Background(), &oauth2.Token{AccessToken: "a"}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestFileStoreConcurrentSaves(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "token.json")
	fs, _ := NewFileStore(path)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fs.Save(ctx, &oauth2.Token{AccessToken: "at-" + itoa(i), RefreshToken: strings.Repeat("r", 1000)}); err != nil {
				t.Error(err)
			}
			if tok, err := fs.Load(ctx); err != nil || tok == nil || len(tok.RefreshToken) != 1000 {
				t.Errorf("Load during saves: %v, %v", tok, err)
			}
		}()
	}
	wg.Wait()
}

func TestFileStoreErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := NewFileStore(""); err == nil {
		t.Error("empty path accepted")
	}
	if _, err := NewFileStore(filepath.Join(dir, "missing", "token.json")); err == nil {
		t.Error("path in a missing directory accepted")
	}
	if _, err := NewFileStore(dir); err == nil {
		t.Error("a directory accepted as the file")
	}
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, nil, 0o600)
	if _, err := NewFileStore(filepath.Join(notDir, "token.json")); err == nil {
		t.Error("path under a file accepted")
	}

	// A corrupt file: an error that names the file but does not quote it.
	path := filepath.Join(dir, "token.json")
	secret := "tok-" + strings.Repeat("x", 20)
	os.WriteFile(path, []byte(`{"format":1,"access_token":"`+secret+`",`), 0o600)
	fs, _ := NewFileStore(path)
	_, err := fs.Load(ctx)
	if err == nil || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), secret) {
		t.Fatalf("corrupt file: err = %v", err)
	}
	if err := fs.Save(ctx, nil); err == nil {
		t.Fatal("Save(nil) succeeded")
	}

	// A save that cannot complete (the path became a non-empty directory,
	// so the rename fails) reports an error and leaves no temporary file.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	blocked := filepath.Join(sub, "token.json")
	fs, err = NewFileStore(blocked)
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(blocked, 0o700)
	os.WriteFile(filepath.Join(blocked, "x"), nil, 0o600)
	if err := fs.Save(ctx, &oauth2.Token{AccessToken: "new"}); err == nil {
		t.Fatal("Save over a directory succeeded")
	}
	if entries, _ := os.ReadDir(sub); len(entries) != 1 {
		t.Fatalf("after a failed save the directory holds %v", entries)
	}
}

func TestDecodeTokenFile(t *testing.T) {
	for _, tc := range []struct {
		data string
		err  string
	}{
		{`{"format":1,"access_token":"a"}`, ""},
		{`{"format":1,"refresh_token":"r"}`, ""},
		{`{"format":1,"access_token":"a","expiry":"2030-01-02T03:04:05Z","expires_in":60}`, ""},
		{`{"format":2,"access_token":"a"}`, "unsupported format 2"},
		{`{"access_token":"a"}`, "unsupported format 0"},
		{`{"format":1}`, "neither"},
		{`{"format":1,"access_token":"a","expires_in":-1}`, "negative"},
		{`{"format":1,"access_token":5}`, "wrong type"},
		{`{"format":1,"access_token":"a","expiry":"yesterday"}`, "invalid token file"},
		{`not json`, "invalid JSON"},
		{``, "invalid JSON"},
	} {
		_, err := decodeTokenFile([]byte(tc.data))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: err = %v, want %q", tc.data, err, tc.err)
		}
	}
}

func FuzzDecodeTokenFile(f *testing.F) {
	f.Add([]byte(`{"format":1,"access_token":"a","token_type":"Bearer","refresh_token":"r","expiry":"2030-01-02T03:04:05Z","expires_in":60}`))
	f.Add([]byte(`{"format":1,"refresh_token":"r"}`))
	f.Add([]byte(`{"format":1,"access_token":"secret-token"`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := decodeTokenFile(data)
		if err != nil {
			if len(data) > 8 && strings.Contains(err.Error(), string(data)) {
				t.Fatalf("error quotes the file: %v", err)
			}
			return
		}
		if tok.AccessToken == "" && tok.RefreshToken == "" || tok.ExpiresIn < 0 {
			t.Fatalf("invalid token accepted: %+v", tok)
		}
		// What decodes, saves and loads back the same.
		fs, err := NewFileStore(filepath.Join(t.TempDir(), "t.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := fs.Save(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		back, err := fs.Load(context.Background())
		if err != nil || back.AccessToken != tok.AccessToken || back.RefreshToken != tok.RefreshToken || !back.Expiry.Equal(tok.Expiry) {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, tok)
		}
	})
}
