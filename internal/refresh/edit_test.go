package refresh_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
)

// gate holds the provider's first token request until opened.
type gate struct {
	held    atomic.Bool
	entered chan struct{}
	open    chan struct{}
}

func newGate() *gate { return &gate{entered: make(chan struct{}), open: make(chan struct{})} }

func (g *gate) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/token") && g.held.CompareAndSwap(false, true) {
			close(g.entered)
			<-g.open
		}
		h.ServeHTTP(w, r)
	})
}

// attempts records the outcomes the refresher reports.
type attempts struct {
	mu       sync.Mutex
	outcomes []string
}

func (a *attempts) add(_ *tokenkeeper.Credential, ev *tokenkeeper.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.outcomes = append(a.outcomes, ev.Outcome)
}

func (a *attempts) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.outcomes...)
}

// TestOperatorEditDuringRefresh: an operator edits a rotating refresh-token
// credential while its refresh waits at the provider. An edit that leaves
// the grant as claimed (the lead; an access token set by hand, which moves
// the fencing version) lets the result commit: the rotated refresh token is
// stored and the next refresh succeeds without any reuse at the provider.
// An edit that replaces the grant discards the result and releases the
// lease at once: a forced refresh right after does not wait for the
// lease's expiry. Scheduled (batched) and unbatched commits alike, on
// SQLite and PostgreSQL.
func TestOperatorEditDuringRefresh(t *testing.T) {
	cases := []struct {
		name string
		edit func(w *world) tokenkeeper.CredentialUpdate
		keep bool
	}{
		{"lead", func(*world) tokenkeeper.CredentialUpdate {
			lead := 7 * time.Minute
			return tokenkeeper.CredentialUpdate{RefreshLead: &lead}
		}, true},
		{"token set by hand", func(*world) tokenkeeper.CredentialUpdate {
			return tokenkeeper.CredentialUpdate{Token: &tokenkeeper.Token{
				AccessToken: "by-hand", TokenType: "Bearer", ExpiresAt: time.Now().Add(time.Minute)}}
		}, true},
		{"refresh token replaced", func(w *world) tokenkeeper.CredentialUpdate {
			rt := w.idp.IssueRefreshToken("app", "")
			w.secrets = append(w.secrets, rt)
			return tokenkeeper.CredentialUpdate{RefreshToken: &rt}
		}, false},
	}
	for _, db := range []string{"sqlite", "postgres"} {
		for _, batched := range []bool{true, false} {
			for _, tc := range cases {
				mode := "unbatched"
				if batched {
					mode = "batched"
				}
				t.Run(db+"/"+mode+"/"+tc.name, func(t *testing.T) {
					g := newGate()
					w := newWorld(t, db == "postgres", g.wrap)
					ctx := context.Background()
					st := w.open("a", nil)
					c := w.credential(st, "c", time.Time{})
					var seen attempts
					cfg := refresh.Config{PollInterval: time.Minute, ProviderTimeout: 5 * time.Second, Lease: 10 * time.Second, OnAttempt: seen.add}
					if !batched {
						cfg.CommitBatchWait = -1
					}
					r := w.replica("a", st, cfg, false)
					select {
					case <-g.entered:
					case <-time.After(10 * time.Second):
						t.Fatal("the credential's first refresh did not reach the provider")
					}
					upd := tc.edit(w)
					edited, err := st.UpdateCredential(ctx, "c", upd, nil)
					if err != nil {
						t.Fatal(err)
					}
					if edited.LeaseOwner == "" {
						t.Fatal("the refresh does not hold a lease")
					}
					close(g.open)
					eventually(t, 5*time.Second, "the refresh's outcome", func() bool { return len(seen.list()) >= 1 })
					got := stored(t, st, "c")
					// Released by the commit. (After a discard the loop is
					// woken and may already hold a claim of its own.)
					if got.LeaseOwner == edited.LeaseOwner {
						t.Fatalf("the lease is still held after the commit: %q until %v", got.LeaseOwner, got.LeaseExpiresAt)
					}
					if tc.keep {
						if o := seen.list()[0]; o != tokenkeeper.OutcomeOK {
							t.Fatalf("outcome %q, want ok", o)
						}
						if got.RefreshToken == c.RefreshToken || got.Token == nil || got.Token.AccessToken == "by-hand" {
							t.Fatal("the refresh's result (rotated refresh token) was not stored")
						}
						w.secrets = append(w.secrets, got.RefreshToken)
						if upd.RefreshLead != nil && got.RefreshLead != *upd.RefreshLead {
							t.Fatalf("the edit was lost: lead %s", got.RefreshLead)
						}
					} else {
						if o := seen.list()[0]; o != tokenkeeper.OutcomeFenced {
							t.Fatalf("outcome %q, want fenced", o)
						}
					}
					// The next refresh, forced, goes at once and succeeds.
					start := time.Now()
					next, err := r.Refresh(ctx, "c", "")
					if err != nil {
						t.Fatalf("refresh after the edit: %v", err)
					}
					// Far below the 10 s lease, which it waited for before.
					if d := time.Since(start); d > 2*time.Second {
						t.Fatalf("refresh after the edit took %s", d)
					}
					t.Logf("refresh after the edit: %s", time.Since(start).Round(time.Millisecond))
					if next.Token == nil || next.Status != tokenkeeper.StatusActive || next.RefreshToken == got.RefreshToken {
						t.Fatalf("the next refresh failed: status %s, %s", next.Status, next.LastError)
					}
					w.secrets = append(w.secrets, next.RefreshToken)
					if !tc.keep && w.idp.Presentations(*upd.RefreshToken) != 1 {
						t.Fatal("the operator's refresh token was not the one used next")
					}
					w.checkProvider()
				})
			}
		}
	}
}
