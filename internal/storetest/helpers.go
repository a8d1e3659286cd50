package storetest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// secret returns a distinctive random secret labelled with what it is.
func secret(label string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return "SECRET-" + label + "-" + hex.EncodeToString(b)
}

// newCred returns a valid refresh_token credential with fresh secrets.
func newCred(name string) *tokenkeeper.Credential {
	return &tokenkeeper.Credential{
		Name:         name,
		TokenURL:     "https://provider.example/oauth/token",
		GrantType:    tokenkeeper.GrantRefreshToken,
		ClientID:     "client-" + name,
		ClientSecret: secret("client-secret-" + name),
		RefreshToken: secret("refresh-token-" + name),
		Scopes:       []string{"read", "write:all"},
		AuthStyle:    tokenkeeper.AuthStyleHeader,
		Params:       map[string]string{"audience": "https://api.example/"},
		RefreshLead:  90 * time.Second,
	}
}

func (e *env) create(c *tokenkeeper.Credential) *tokenkeeper.Credential {
	e.t.Helper()
	if err := e.s.CreateCredential(e.ctx, c); err != nil {
		e.t.Fatalf("CreateCredential(%s): %v", c.Name, err)
	}
	return c
}

func (e *env) get(name string) *tokenkeeper.Credential {
	e.t.Helper()
	c, err := e.s.Credential(e.ctx, name)
	if err != nil {
		e.t.Fatalf("Credential(%s): %v", name, err)
	}
	return c
}

func (e *env) events(name string) []*tokenkeeper.Event {
	e.t.Helper()
	evs, err := e.s.Events(e.ctx, name, 1000)
	if err != nil {
		e.t.Fatalf("Events(%s): %v", name, err)
	}
	return evs
}

// claim leases one due credential by id at the clock's time.
func (e *env) claim(id, owner string) *tokenkeeper.Credential {
	e.t.Helper()
	c, err := e.s.ClaimCredential(e.ctx, id, owner, e.clock.Now(), time.Minute)
	if err != nil {
		e.t.Fatalf("ClaimCredential(%s, %s): %v", id, owner, err)
	}
	return c
}

// wantCode fails unless err carries the tokenkeeper error code.
func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if got := tokenkeeper.ErrorCode(err); got != code {
		t.Fatalf("error = %v (code %q), want code %q", err, got, code)
	}
}

// asJSON renders every field, secrets included, with times normalized, for
// comparisons.
func asJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// cloneCred returns a deep copy of c.
func cloneCred(c *tokenkeeper.Credential) *tokenkeeper.Credential {
	n := *c
	n.Scopes = append([]string(nil), c.Scopes...)
	if c.Scopes == nil {
		n.Scopes = nil
	}
	if c.Params != nil {
		n.Params = make(map[string]string, len(c.Params))
		for k, v := range c.Params {
			n.Params[k] = v
		}
	}
	if c.Token != nil {
		t := *c.Token
		n.Token = &t
	}
	return &n
}

func sameCredential(t testing.TB, got, want *tokenkeeper.Credential) {
	t.Helper()
	if g, w := asJSON(got), asJSON(want); g != w {
		t.Fatalf("credential differs\n got: %s\nwant: %s", g, w)
	}
}

// secretsOf lists the secrets a credential holds.
func secretsOf(c *tokenkeeper.Credential) []string {
	var s []string
	if c.ClientSecret != "" {
		s = append(s, c.ClientSecret)
	}
	if c.RefreshToken != "" {
		s = append(s, c.RefreshToken)
	}
	if c.Token != nil && c.Token.AccessToken != "" {
		s = append(s, c.Token.AccessToken)
	}
	return s
}

// checkNoSecret fails if text contains a secret in any common encoding.
func checkNoSecret(t testing.TB, where string, text []byte, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		for _, form := range []string{
			s,
			hex.EncodeToString([]byte(s)),
			strings.ToUpper(hex.EncodeToString([]byte(s))),
			base64.StdEncoding.EncodeToString([]byte(s)),
		} {
			if bytes.Contains(text, []byte(form)) {
				t.Errorf("%s contains a secret (%.20s...)", where, s)
			}
		}
	}
}

func checkErrNoSecret(t testing.TB, err error, secrets []string) {
	t.Helper()
	if err != nil {
		checkNoSecret(t, fmt.Sprintf("error %q", err.Error()), []byte(err.Error()), secrets)
	}
}

func ptr[T any](v T) *T { return &v }
