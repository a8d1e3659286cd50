package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// A session is a user's login kept by the CLI between commands: the
// broker's refresh token (rotated on every use) and the current access
// token, in $XDG_CONFIG_HOME/tokenkeeper/sessions.json (mode 0600, in a
// directory of mode 0700), one per broker URL. Commands without an API key
// use it; an access token about to expire is replaced through
// /v1/auth/refresh first, under a file lock, so that two commands running
// at once never present the same refresh token twice (which the broker
// takes for theft, revoking the session).
type session struct {
	Username        string    `json:"username"`
	AccessToken     string    `json:"access_token"`
	AccessIssuedAt  time.Time `json:"access_issued_at"`
	AccessExpiresAt time.Time `json:"access_expires_at"`
	RefreshToken    string    `json:"refresh_token"`
}

// refreshDue reports whether the access token should be replaced before
// use: within refreshAhead of its expiry, or a quarter of its lifetime for
// short ones.
func (s *session) refreshDue(now time.Time) bool {
	ahead := min(refreshAhead, s.AccessExpiresAt.Sub(s.AccessIssuedAt)/4)
	return !now.Before(s.AccessExpiresAt.Add(-ahead))
}

type sessionFile struct {
	Sessions map[string]*session `json:"sessions"`
}

// sessionStore is the sessions file of one user of this machine.
type sessionStore struct {
	dir string
}

// sessionDir is $XDG_CONFIG_HOME/tokenkeeper, or ~/.config/tokenkeeper.
func (e *env) sessionStore() (*sessionStore, error) {
	base := e.getenv("XDG_CONFIG_HOME")
	if base == "" || !filepath.IsAbs(base) { // the XDG spec: a relative value is ignored
		home := e.getenv("HOME")
		if home == "" {
			h, err := os.UserHomeDir()
			if err != nil {
				return nil, fmt.Errorf("find the config directory: set $XDG_CONFIG_HOME or $HOME: %w", err)
			}
			home = h
		}
		base = filepath.Join(home, ".config")
	}
	return &sessionStore{dir: filepath.Join(base, "tokenkeeper")}, nil
}

func (s *sessionStore) path() string { return filepath.Join(s.dir, "sessions.json") }

// lock takes the exclusive lock of the sessions file until unlock.
func (s *sessionStore) lock() (unlock func(), err error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", s.dir, err)
	}
	if err := os.Chmod(s.dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.dir, "sessions.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open session lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock sessions: %w", err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

func (s *sessionStore) read() (*sessionFile, error) {
	sf := &sessionFile{Sessions: map[string]*session{}}
	data, err := os.ReadFile(s.path())
	if errors.Is(err, fs.ErrNotExist) {
		return sf, nil
	} else if err != nil {
		return nil, fmt.Errorf("read sessions: %w", err)
	}
	if fi, err := os.Stat(s.path()); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %#o: others could read your session; run `chmod 600 %s` or log in again after removing it", s.path(), fi.Mode().Perm(), s.path())
	}
	if err := json.Unmarshal(data, sf); err != nil {
		return nil, fmt.Errorf("read sessions %s: %w (remove it and log in again)", s.path(), err)
	}
	if sf.Sessions == nil {
		sf.Sessions = map[string]*session{}
	}
	return sf, nil
}

// write replaces the sessions file atomically, mode 0600.
func (s *sessionStore) write(sf *sessionFile) error {
	data, err := json.MarshalIndent(sf, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, ".sessions-*.json")
	if err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save session: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save session: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), s.path()); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	return nil
}

// get returns the session for server, or nil.
func (s *sessionStore) get(server string) (*session, error) {
	sf, err := s.read()
	if err != nil {
		return nil, err
	}
	return sf.Sessions[server], nil
}

// update runs fn on the session of server under the lock and saves the
// result (nil removes it).
func (s *sessionStore) update(server string, fn func(cur *session) (*session, error)) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	sf, err := s.read()
	if err != nil {
		return err
	}
	next, err := fn(sf.Sessions[server])
	if err != nil {
		return err
	}
	if next == nil {
		delete(sf.Sessions, server)
	} else {
		sf.Sessions[server] = next
	}
	return s.write(sf)
}

// loginAnswer is the broker's answer to a login or a refresh.
type loginAnswer struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
}

func (a *loginAnswer) session(username string, now time.Time) *session {
	return &session{Username: username, AccessToken: a.AccessToken, RefreshToken: a.RefreshToken,
		AccessIssuedAt: now, AccessExpiresAt: now.Add(time.Duration(a.ExpiresIn) * time.Second)}
}

// postJSON posts in to the broker without authentication (login, refresh)
// and decodes the answer.
func postJSON(ctx context.Context, hc *http.Client, url string, in any, out any) error {
	body, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the broker: %w", unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		ae := &apiError{}
		if json.Unmarshal(data, ae) != nil || ae.Detail == "" {
			ae.Detail = http.StatusText(resp.StatusCode)
		}
		ae.Status = resp.StatusCode
		return ae
	}
	return json.Unmarshal(data, out)
}

// sessionAuth authenticates an apiClient with the stored session of its
// server.
type sessionAuth struct {
	store    *sessionStore
	server   string
	username string
	hc       *http.Client
	// password reads the user's password again when the broker wants a
	// fresh login (a sensitive command on an old session).
	password func(username string) (string, error)
}

// refreshAhead is how long before its expiry an access token is replaced
// (a quarter of its lifetime if that is shorter).
const refreshAhead = 30 * time.Second

// errSessionEnded: the broker refused the stored refresh token.
type errSessionEnded struct{ server, username string }

func (e *errSessionEnded) Error() string {
	return fmt.Sprintf("your session on %s has ended (logged out, expired or revoked): run 'tokenkeeper login %s' again", e.server, e.username)
}

// accessToken returns a valid access token, refreshing the session first
// when its access token expires within refreshAhead, or when it is still
// the token the broker just refused (refused). A session the broker no
// longer knows is removed from the file.
func (sa *sessionAuth) accessToken(ctx context.Context, refused string) (string, error) {
	var tok string
	var ended *errSessionEnded
	err := sa.store.update(sa.server, func(cur *session) (*session, error) {
		if cur == nil {
			return nil, fmt.Errorf("you are not logged in to %s: run 'tokenkeeper login USER' or set $TOKENKEEPER_API_KEY", sa.server)
		}
		sa.username = cur.Username
		if cur.AccessToken != refused && !cur.refreshDue(time.Now()) {
			tok = cur.AccessToken
			return cur, nil
		}
		var ans loginAnswer
		if err := postJSON(ctx, sa.hc, sa.server+"/v1/auth/refresh", map[string]string{"refresh_token": cur.RefreshToken}, &ans); err != nil {
			var ae *apiError
			if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
				ended = &errSessionEnded{sa.server, cur.Username}
				return nil, nil // drop the session
			}
			return nil, fmt.Errorf("refresh the session: %w", err)
		}
		// Saved (by update) before the new access token is used.
		next := ans.session(cur.Username, time.Now())
		tok = next.AccessToken
		return next, nil
	})
	if err == nil && ended != nil {
		err = ended
	}
	return tok, err
}

// login signs in again with the password, for a fresh session, and saves
// it in place of the old one.
func (sa *sessionAuth) login(ctx context.Context) error {
	if sa.password == nil {
		return fmt.Errorf("this command needs a fresh login: run 'tokenkeeper login %s' again", sa.username)
	}
	pw, err := sa.password(sa.username)
	if err != nil {
		return err
	}
	var ans loginAnswer
	if err := postJSON(ctx, sa.hc, sa.server+"/v1/auth/login", map[string]string{"username": sa.username, "password": pw}, &ans); err != nil {
		return fmt.Errorf("log in again: %w", err)
	}
	return sa.store.update(sa.server, func(*session) (*session, error) { return ans.session(sa.username, time.Now()), nil })
}
