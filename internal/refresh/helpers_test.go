package refresh_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/faultproxy"
	"github.com/tokenkeeper/tokenkeeper/internal/postgres"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
	"github.com/tokenkeeper/tokenkeeper/internal/storetest"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// world is one test's provider, database schema and secrets; replicas share it.
type world struct {
	t       *testing.T
	idp     *oauthtest.Server
	secret  string // the provider client's secret
	master  []byte
	url     string // database URL ("" for SQLite)
	schema  string
	sqlite  string // SQLite path ("" for PostgreSQL)
	logs    *syncBuffer
	secrets []string // every secret a log must never show
}

// newWorld starts oauthtest (rotation, strict reuse detection, plus opts) in
// front of handler wrap (nil: none), and a fresh PostgreSQL schema when
// pg is set, or a SQLite file otherwise.
func newWorld(t *testing.T, pg bool, wrap func(http.Handler) http.Handler, opts ...oauthtest.Option) *world {
	t.Helper()
	w := &world{t: t, secret: "SECRET-client-" + randomHex(8), logs: &syncBuffer{}}
	w.secrets = append(w.secrets, w.secret)
	w.master = make([]byte, 32)
	_, _ = rand.Read(w.master)
	all := append([]oauthtest.Option{oauthtest.WithClient("app", w.secret), oauthtest.WithRotation(true), oauthtest.WithReuseDetection(0)}, opts...)
	if wrap == nil {
		w.idp = oauthtest.NewServer(all...)
	} else {
		w.idp = oauthtest.NewHandler(all...)
		srv := httptest.NewServer(wrap(w.idp.Handler()))
		w.idp.SetIssuer(srv.URL)
		t.Cleanup(srv.Close)
	}
	t.Cleanup(w.idp.Close)
	if pg {
		w.url = storetest.PostgresURL(t)
		w.schema = "tk_refresh_" + randomHex(6)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, w.url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `CREATE SCHEMA `+w.schema); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			conn, err := pgx.Connect(ctx, w.url)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, `DROP SCHEMA `+w.schema+` CASCADE`); err != nil {
				t.Error(err)
			}
		})
	} else {
		w.sqlite = filepath.Join(t.TempDir(), "tk.db")
	}
	t.Cleanup(func() {
		logs := w.logs.String()
		for _, s := range w.secrets {
			if strings.Contains(logs, s) {
				t.Errorf("a secret appears in the logs")
			}
		}
	})
	return w
}

func (w *world) logger(name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("replica", name)
}

// open opens a store on the world's database, directly or through proxy
// (nil: directly). It is closed when the test ends.
func (w *world) open(name string, proxy *faultproxy.Proxy) tokenkeeper.Store {
	w.t.Helper()
	ctx := context.Background()
	var st tokenkeeper.Store
	var err error
	if w.url == "" {
		st, err = sqlite.Open(ctx, w.sqlite, w.master, sqlite.WithLogger(w.logger(name)))
	} else {
		u := w.url
		if proxy != nil {
			pu, perr := url.Parse(w.url)
			if perr != nil {
				w.t.Fatal(perr)
			}
			pu.Host = proxy.Addr()
			u = pu.String()
		}
		st, err = postgres.Open(ctx, u, w.master, postgres.WithLogger(w.logger(name)), postgres.WithPoolConfig(func(c *pgxpool.Config) {
			c.ConnConfig.RuntimeParams["search_path"] = w.schema
			c.ConnConfig.RuntimeParams["application_name"] = w.schema + "-" + name
			c.ConnConfig.ConnectTimeout = 2 * time.Second
		}))
	}
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { st.Close() })
	return st
}

// proxy starts a fault proxy in front of the world's PostgreSQL server.
func (w *world) proxy() *faultproxy.Proxy {
	w.t.Helper()
	u, err := url.Parse(w.url)
	if err != nil {
		w.t.Fatal(err)
	}
	p, err := faultproxy.New(u.Host)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { p.Close() })
	return p
}

// credential creates a rotating refresh_token credential at the provider and
// in st, due at next (zero: now).
func (w *world) credential(st tokenkeeper.Store, name string, next time.Time) *tokenkeeper.Credential {
	w.t.Helper()
	rt := w.idp.IssueRefreshToken("app", "")
	w.secrets = append(w.secrets, rt)
	c := &tokenkeeper.Credential{
		Name: name, TokenURL: w.idp.TokenURL(), GrantType: tokenkeeper.GrantRefreshToken,
		ClientID: "app", ClientSecret: w.secret, RefreshToken: rt, AuthStyle: tokenkeeper.AuthStyleHeader,
		NextRefreshAt: next,
	}
	if err := st.CreateCredential(context.Background(), c); err != nil {
		w.t.Fatal(err)
	}
	return c
}

// refreshes returns how many refresh_token requests the provider received.
func (w *world) refreshes() int { return w.idp.Stats().TokenRequests["refresh_token"] }

// checkProvider fails the test if the provider saw a refresh token twice.
func (w *world) checkProvider() {
	w.t.Helper()
	st := w.idp.Stats()
	if st.ReuseDetections != 0 || st.FamiliesRevoked != 0 {
		w.t.Errorf("provider: %d reuse detections, %d families revoked", st.ReuseDetections, st.FamiliesRevoked)
	}
	if m := w.idp.MaxPresentations(); m > 1 {
		w.t.Errorf("a refresh token was presented %d times", m)
	}
}

// replica is one running Refresher.
type replica struct {
	*refresh.Refresher
	store  tokenkeeper.Store
	cancel context.CancelFunc
	done   chan struct{}
}

// replica starts a Refresher on st; follow also subscribes it to changes.
// cfg.Store and cfg.Logger are filled in. It stops when the test ends.
func (w *world) replica(name string, st tokenkeeper.Store, cfg refresh.Config, follow bool) *replica {
	w.t.Helper()
	cfg.Store = st
	cfg.Logger = w.logger(name)
	if cfg.Owner == "" {
		cfg.Owner = name
	}
	ref, err := refresh.New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{Refresher: ref, store: st, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = ref.Run(ctx) }()
	if follow {
		n, ok := st.(tokenkeeper.ChangeNotifier)
		if !ok {
			w.t.Fatal("the store does not implement ChangeNotifier")
		}
		sn := &signalNotifier{n: n, listening: make(chan struct{})}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ref.Follow(ctx, sn); err != nil {
				w.t.Errorf("Follow: %v", err)
			}
		}()
		select {
		case <-sn.listening:
		case <-time.After(10 * time.Second):
			w.t.Fatal("the replica does not listen for changes")
		}
	}
	go func() { wg.Wait(); close(r.done) }()
	w.t.Cleanup(r.stop)
	return r
}

// signalNotifier closes listening after the first change it passes on (the
// resync that says the subscription listens).
type signalNotifier struct {
	n         tokenkeeper.ChangeNotifier
	listening chan struct{}
	once      sync.Once
}

func (s *signalNotifier) Subscribe(ctx context.Context, f func(tokenkeeper.Change)) error {
	return s.n.Subscribe(ctx, func(c tokenkeeper.Change) {
		f(c)
		s.once.Do(func() { close(s.listening) })
	})
}

// stop ends the replica and waits for it.
func (r *replica) stop() {
	r.cancel()
	<-r.done
}

// eventually polls cond every 5 ms until it holds or d passes, and returns
// how long it took.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}
