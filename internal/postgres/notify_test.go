package postgres

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/faultproxy"
	"github.com/tokenkeeper/tokenkeeper/internal/storetest"
)

// subscriber collects the changes a subscription delivers.
type subscriber struct {
	t    *testing.T
	ch   chan tokenkeeper.Change
	done chan error
}

// subscribe subscribes to db until the test ends and waits for the first
// resync, which says the subscription listens.
func subscribe(t *testing.T, db *DB) *subscriber {
	t.Helper()
	s := &subscriber{t: t, ch: make(chan tokenkeeper.Change, 1000), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { s.done <- db.Subscribe(ctx, func(c tokenkeeper.Change) { s.ch <- c }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("Subscribe returned %v after its context ended", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Subscribe did not return after its context ended")
		}
	})
	s.want(tokenkeeper.Change{Kind: tokenkeeper.ChangeResync})
	return s
}

// next returns the next change, failing after a few seconds.
func (s *subscriber) next() tokenkeeper.Change {
	s.t.Helper()
	select {
	case c := <-s.ch:
		return c
	case <-time.After(5 * time.Second):
		s.t.Fatal("no change notification within 5s")
		return tokenkeeper.Change{}
	}
}

// want checks the next change against w; a zero w.Version or
// w.NextRefreshAt is not compared.
func (s *subscriber) want(w tokenkeeper.Change) tokenkeeper.Change {
	s.t.Helper()
	got := s.next()
	if got.Kind != w.Kind || got.CredentialID != w.CredentialID || got.CredentialName != w.CredentialName ||
		(w.Version != 0 && got.Version != w.Version) || (!w.NextRefreshAt.IsZero() && !got.NextRefreshAt.Equal(w.NextRefreshAt)) {
		s.t.Fatalf("change = %+v, want %+v", got, w)
	}
	return got
}

// none checks that nothing arrives for d.
func (s *subscriber) none(d time.Duration) {
	s.t.Helper()
	if d == 0 {
		select {
		case c := <-s.ch:
			s.t.Fatalf("unexpected change %+v", c)
		default:
		}
		return
	}
	select {
	case c := <-s.ch:
		s.t.Fatalf("unexpected change %+v", c)
	case <-time.After(d):
	}
}

func notifyCred(name string) *tokenkeeper.Credential {
	return &tokenkeeper.Credential{Name: name, TokenURL: "https://p.example/token", GrantType: tokenkeeper.GrantRefreshToken,
		ClientID: "client", ClientSecret: "SECRET-client-" + name, RefreshToken: "SECRET-refresh-" + name,
		AuthStyle: tokenkeeper.AuthStyleHeader}
}

// TestNotifyChanges checks which writes notify, what a notification says,
// that every subscriber of the schema (the writer's own included) gets it
// in commit order, that claims and failed writes send nothing, that another
// schema hears nothing, and that no payload holds a secret.
func TestNotifyChanges(t *testing.T) {
	_, inSchema := freshSchema(t)
	_, otherSchema := freshSchema(t)
	ctx := context.Background()
	master := testKey(t)
	a := openTest(t, master, time.Now, inSchema)
	b := openTest(t, master, time.Now, inSchema)
	other := openTest(t, testKey(t), time.Now, otherSchema)

	// A raw listener sees the payloads exactly as sent.
	raw, err := pgx.Connect(ctx, storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close(ctx)
	var channel string
	if err := a.pool.QueryRow(ctx, `SELECT `+channelExpr).Scan(&channel); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(channel, "tokenkeeper.") || len(channel) > 63 {
		t.Fatalf("channel %q", channel)
	}
	if _, err := raw.Exec(ctx, `LISTEN `+pgx.Identifier{channel}.Sanitize()); err != nil {
		t.Fatal(err)
	}

	subA, subB, subOther := subscribe(t, a), subscribe(t, b), subscribe(t, other)

	c := notifyCred("c1")
	if err := a.CreateCredential(ctx, c); err != nil {
		t.Fatal(err)
	}
	created := tokenkeeper.Change{Kind: tokenkeeper.ChangeCreated, CredentialID: c.ID, CredentialName: "c1", Version: 1, NextRefreshAt: c.NextRefreshAt}
	subA.want(created)
	subB.want(created)

	// Nothing notifies: a duplicate name, an update of a missing credential,
	// claims, a fenced commit.
	if err := a.CreateCredential(ctx, notifyCred("c1")); tokenkeeper.ErrorCode(err) != tokenkeeper.ECONFLICT {
		t.Fatalf("duplicate create = %v", err)
	}
	st := tokenkeeper.StatusDisabled
	if _, err := a.UpdateCredential(ctx, "missing", tokenkeeper.CredentialUpdate{Status: &st}, nil); tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTFOUND {
		t.Fatalf("update of a missing credential = %v", err)
	}
	claimed, err := a.ClaimDue(ctx, "w1", time.Now().Add(time.Second), time.Minute, 10)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("ClaimDue = %d, %v", len(claimed), err)
	}
	if _, err := b.CompleteRefresh(ctx, c.ID, "w1", claimed[0].Version-1, &tokenkeeper.RefreshResult{Status: tokenkeeper.StatusActive}); tokenkeeper.ErrorCode(err) != tokenkeeper.ECONFLICT {
		t.Fatalf("fenced commit = %v", err)
	}

	next := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	done, err := b.CompleteRefresh(ctx, c.ID, "w1", claimed[0].Version, &tokenkeeper.RefreshResult{
		Token:  &tokenkeeper.Token{AccessToken: "SECRET-access-c1", TokenType: "Bearer", ExpiresAt: next.Add(time.Minute)},
		Status: tokenkeeper.StatusActive, RefreshToken: "SECRET-rotated-c1", LastRefreshAt: time.Now(), NextRefreshAt: next,
		Event: &tokenkeeper.Event{Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeOK, Time: time.Now()},
	})
	if err != nil {
		t.Fatal(err)
	}
	refreshed := tokenkeeper.Change{Kind: tokenkeeper.ChangeRefresh, CredentialID: c.ID, CredentialName: "c1", Version: done.Version, NextRefreshAt: next}
	subA.want(refreshed)
	subB.want(refreshed)

	upd, err := a.UpdateCredential(ctx, "c1", tokenkeeper.CredentialUpdate{Status: &st}, nil)
	if err != nil {
		t.Fatal(err)
	}
	updated := tokenkeeper.Change{Kind: tokenkeeper.ChangeUpdated, CredentialID: c.ID, CredentialName: "c1", Version: upd.Version, NextRefreshAt: next}
	subA.want(updated)
	subB.want(updated)

	if err := b.DeleteCredential(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	deleted := tokenkeeper.Change{Kind: tokenkeeper.ChangeDeleted, CredentialID: c.ID, CredentialName: "c1"}
	for _, s := range []*subscriber{subA, subB} {
		if got := s.want(deleted); got.Version != 0 || !got.NextRefreshAt.IsZero() {
			t.Fatalf("deleted change carries state: %+v", got)
		}
	}
	subA.none(200 * time.Millisecond)
	subB.none(0)
	subOther.none(0)

	// Four notifications went out, and none carries a secret.
	for i := 0; i < 4; i++ {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := raw.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("raw notification %d: %v", i, err)
		}
		if strings.Contains(n.Payload, "SECRET") {
			t.Fatalf("a notification payload holds a secret: %s", n.Payload)
		}
		var p map[string]any
		if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
			t.Fatalf("payload %q: %v", n.Payload, err)
		}
	}
}

// TestNotifyReconnect terminates the listening backend: the subscription
// reconnects by itself, says resync, and delivers changes again.
func TestNotifyReconnect(t *testing.T) {
	_, inSchema := freshSchema(t)
	ctx := context.Background()
	master := testKey(t)
	a := openTest(t, master, time.Now, inSchema)
	b := openTest(t, master, time.Now, inSchema)
	pids := make(chan uint32, 10)
	b.listen.listening = func(pid uint32) { pids <- pid }
	sub := subscribe(t, b)
	pid := <-pids

	for round := 0; round < 2; round++ {
		start := time.Now()
		var ok bool
		if err := a.pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, int32(pid)).Scan(&ok); err != nil || !ok {
			t.Fatalf("terminate the listener: %v, %v", ok, err)
		}
		sub.want(tokenkeeper.Change{Kind: tokenkeeper.ChangeResync})
		t.Logf("round %d: resync %s after the listening backend was terminated", round, time.Since(start).Round(time.Millisecond))
		pid = <-pids

		c := notifyCred("after-" + string(rune('a'+round)))
		if err := a.CreateCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
		sub.want(tokenkeeper.Change{Kind: tokenkeeper.ChangeCreated, CredentialID: c.ID, CredentialName: c.Name, Version: 1})
	}
}

// proxied opens a DB on the test database through a fault proxy.
func proxied(t *testing.T, master []byte, opts ...Option) (*DB, *faultproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	u.Host = p.Addr()
	db, err := Open(context.Background(), u.String(), master, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, p
}

// TestNotifyOutage cuts the listener off the database, by refusing
// connections and by dropping traffic silently: it notices, keeps trying,
// and says resync once it listens again.
func TestNotifyOutage(t *testing.T) {
	for _, mode := range []faultproxy.Mode{faultproxy.Refuse, faultproxy.Blackhole} {
		t.Run(mode.String(), func(t *testing.T) {
			_, inSchema := freshSchema(t)
			ctx := context.Background()
			master := testKey(t)
			a := openTest(t, master, time.Now, inSchema)
			b, proxy := proxied(t, master, inSchema)
			b.listen.check = 200 * time.Millisecond
			b.listen.timeout = 300 * time.Millisecond
			b.listen.backoffMax = 400 * time.Millisecond
			sub := subscribe(t, b)

			proxy.Set(mode)
			// Long enough for the listener to notice and retry a few times.
			time.Sleep(1500 * time.Millisecond)
			lost := notifyCred("lost")
			if err := a.CreateCredential(ctx, lost); err != nil {
				t.Fatal(err)
			}
			sub.none(300 * time.Millisecond)

			start := time.Now()
			proxy.Set(faultproxy.Forward)
			sub.want(tokenkeeper.Change{Kind: tokenkeeper.ChangeResync})
			t.Logf("%s: resync %s after the database came back", mode, time.Since(start).Round(time.Millisecond))
			c := notifyCred("back")
			if err := a.CreateCredential(ctx, c); err != nil {
				t.Fatal(err)
			}
			sub.want(tokenkeeper.Change{Kind: tokenkeeper.ChangeCreated, CredentialID: c.ID, CredentialName: "back", Version: 1})
		})
	}
}

func TestSubscribeEnds(t *testing.T) {
	_, inSchema := freshSchema(t)
	db := openTest(t, testKey(t), time.Now, inSchema)
	if err := db.Subscribe(context.Background(), nil); tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
		t.Fatalf("Subscribe(nil) = %v, want EINVALID", err)
	}

	// Close ends a subscription.
	var mu sync.Mutex
	var got []tokenkeeper.Change
	listening := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- db.Subscribe(context.Background(), func(c tokenkeeper.Change) {
			mu.Lock()
			got = append(got, c)
			mu.Unlock()
			select {
			case listening <- struct{}{}:
			default:
			}
		})
	}()
	select {
	case <-listening:
	case <-time.After(5 * time.Second):
		t.Fatal("no resync")
	}
	db.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Subscribe after Close = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe did not return after Close")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Kind != tokenkeeper.ChangeResync {
		t.Fatalf("changes = %+v, want one resync", got)
	}
	if err := db.Subscribe(context.Background(), func(tokenkeeper.Change) {}); tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
		t.Fatalf("Subscribe on a closed DB = %v, want EINVALID", err)
	}
}

// TestSubscribeUnreachable starts a subscription while the database cannot
// be reached: it waits, and listens once it can.
func TestSubscribeUnreachable(t *testing.T) {
	_, inSchema := freshSchema(t)
	db, proxy := proxied(t, testKey(t), inSchema, WithPoolConfig(func(c *pgxpool.Config) {}))
	db.listen.backoffMax = 200 * time.Millisecond
	proxy.Set(faultproxy.Refuse)
	got := make(chan tokenkeeper.Change, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- db.Subscribe(ctx, func(c tokenkeeper.Change) { got <- c }) }()
	select {
	case c := <-got:
		t.Fatalf("change %+v while the database is unreachable", c)
	case <-time.After(time.Second):
	}
	proxy.Set(faultproxy.Forward)
	select {
	case c := <-got:
		if c.Kind != tokenkeeper.ChangeResync {
			t.Fatalf("first change %+v, want resync", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no resync after the database became reachable")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestDecodeChange(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)
	for _, tc := range []struct {
		payload string
		want    tokenkeeper.Change
		err     bool
	}{
		{`{"kind":"refresh","id":"i","name":"n","version":7,"next_refresh_at":"2030-01-02T03:04:05.000006Z"}`,
			tokenkeeper.Change{Kind: "refresh", CredentialID: "i", CredentialName: "n", Version: 7, NextRefreshAt: at}, false},
		{`{"kind":"deleted","id":"i","name":"n"}`, tokenkeeper.Change{Kind: "deleted", CredentialID: "i", CredentialName: "n"}, false},
		{`{"kind":"resync","id":"i","name":"n"}`, tokenkeeper.Change{Kind: "resync"}, true},
		{`{"kind":"created","name":"n"}`, tokenkeeper.Change{Kind: "resync"}, true},
		{`{"kind":"bogus","id":"i","name":"n"}`, tokenkeeper.Change{Kind: "resync"}, true},
		{`not json`, tokenkeeper.Change{Kind: "resync"}, true},
		{``, tokenkeeper.Change{Kind: "resync"}, true},
	} {
		got, err := decodeChange(tc.payload)
		if (err != nil) != tc.err || got.Kind != tc.want.Kind || got.CredentialID != tc.want.CredentialID ||
			got.CredentialName != tc.want.CredentialName || got.Version != tc.want.Version || !got.NextRefreshAt.Equal(tc.want.NextRefreshAt) {
			t.Errorf("decodeChange(%q) = %+v, %v; want %+v (error %v)", tc.payload, got, err, tc.want, tc.err)
		}
	}
}

func FuzzDecodeChange(f *testing.F) {
	f.Add(`{"kind":"refresh","id":"i","name":"n","version":7,"next_refresh_at":"2030-01-02T03:04:05Z"}`)
	f.Add(`{"kind":"deleted","id":"i","name":"n"}`)
	f.Add(`{"kind":"updated","id":"","name":"n","version":-1}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, payload string) {
		ch, err := decodeChange(payload)
		if err != nil {
			if ch != (tokenkeeper.Change{Kind: tokenkeeper.ChangeResync}) {
				t.Fatalf("an unreadable payload gives %+v, want a bare resync", ch)
			}
			return
		}
		switch ch.Kind {
		case tokenkeeper.ChangeCreated, tokenkeeper.ChangeUpdated, tokenkeeper.ChangeDeleted, tokenkeeper.ChangeRefresh:
		default:
			t.Fatalf("accepted kind %q", ch.Kind)
		}
		if ch.CredentialID == "" || ch.CredentialName == "" {
			t.Fatalf("accepted a change naming no credential: %+v", ch)
		}
		// What decodes re-encodes to the same change.
		b, _ := json.Marshal(changePayload{Kind: ch.Kind, ID: ch.CredentialID, Name: ch.CredentialName, Version: ch.Version, NextRefreshAt: timePtr(ch.NextRefreshAt)})
		again, err := decodeChange(string(b))
		if err != nil || again.Kind != ch.Kind || again.CredentialID != ch.CredentialID || again.CredentialName != ch.CredentialName ||
			again.Version != ch.Version || !again.NextRefreshAt.Equal(ch.NextRefreshAt) {
			t.Fatalf("round trip of %+v gave %+v, %v", ch, again, err)
		}
	})
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
