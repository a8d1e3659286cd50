package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

func testEvents(e *env) {
	t := e.t
	a := e.create(newCred("a"))
	e.create(newCred("b"))

	// Events out of time order, two at the same instant.
	times := []time.Duration{3, 1, 5, 5, 2}
	var added []*tokenkeeper.Event
	for i, d := range times {
		ev := &tokenkeeper.Event{
			CredentialID: a.ID, CredentialName: "a", Time: start.Add(d * time.Second),
			Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeError, ErrorCode: "http_503",
			Message: fmt.Sprintf("attempt %d", i), Latency: time.Duration(i) * time.Millisecond, Actor: "refresher:x",
		}
		if err := e.s.AddEvent(e.ctx, ev); err != nil {
			t.Fatal(err)
		}
		if ev.ID == 0 {
			t.Fatal("AddEvent assigned no id")
		}
		added = append(added, ev)
	}
	// By name only, with the clock's time.
	e.clock.Set(start.Add(10 * time.Second))
	byName := &tokenkeeper.Event{CredentialName: "a", Kind: "note"}
	if err := e.s.AddEvent(e.ctx, byName); err != nil {
		t.Fatal(err)
	}
	if !byName.Time.Equal(start.Add(10*time.Second)) || byName.CredentialID != a.ID {
		t.Fatalf("event by name: %s", asJSON(byName))
	}
	if err := e.s.AddEvent(e.ctx, &tokenkeeper.Event{CredentialName: "b", Kind: "note"}); err != nil {
		t.Fatal(err)
	}

	got, err := e.s.Events(e.ctx, "a", 4)
	if err != nil {
		t.Fatal(err)
	}
	// Newest first; ties broken by insertion order, newest first.
	want := []*tokenkeeper.Event{byName, added[3], added[2], added[0]}
	if asJSON(got) != asJSON(want) {
		t.Fatalf("Events(a, 4)\n got: %s\nwant: %s", asJSON(got), asJSON(want))
	}
	all, err := e.s.Events(e.ctx, "a", 100)
	if err != nil || len(all) != 6 {
		t.Fatalf("Events(a, 100) = %d, %v", len(all), err)
	}
	if bs := e.events("b"); len(bs) != 1 || bs[0].Kind != "note" {
		t.Fatalf("Events(b) = %s", asJSON(bs))
	}
	_, err = e.s.Events(e.ctx, "a", 0)
	wantCode(t, err, tokenkeeper.EINVALID)
	wantCode(t, e.s.AddEvent(e.ctx, nil), tokenkeeper.EINVALID)
	wantCode(t, e.s.AddEvent(e.ctx, &tokenkeeper.Event{CredentialName: "a"}), tokenkeeper.EINVALID)

	// An event about no credential (an operator action) is accepted.
	if err := e.s.AddEvent(e.ctx, &tokenkeeper.Event{Kind: "apikey_created", Actor: "cli"}); err != nil {
		t.Fatal(err)
	}
}

func hashOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func testAPIKeys(e *env) {
	t := e.t
	if keys, err := e.s.APIKeys(e.ctx); err != nil || len(keys) != 0 {
		t.Fatalf("APIKeys on an empty store = %v, %v", keys, err)
	}
	adminKey, consumerKey := secret("tk_admin"), secret("tk_consumer")
	admin := &tokenkeeper.APIKey{Name: "admin", Prefix: "tk_abcd", Hash: hashOf(adminKey), Role: tokenkeeper.RoleAdmin}
	if err := e.s.CreateAPIKey(e.ctx, admin); err != nil {
		t.Fatal(err)
	}
	if !idRE.MatchString(admin.ID) || !admin.CreatedAt.Equal(start) {
		t.Fatalf("created key: %s", asJSON(admin))
	}
	e.clock.Add(time.Second)
	consumer := &tokenkeeper.APIKey{Name: "svc", Prefix: "tk_efgh", Hash: hashOf(consumerKey), Role: tokenkeeper.RoleConsumer,
		Credentials: []string{"github", "slack"}}
	if err := e.s.CreateAPIKey(e.ctx, consumer); err != nil {
		t.Fatal(err)
	}

	got, err := e.s.APIKeyByHash(e.ctx, hashOf(consumerKey))
	if err != nil {
		t.Fatal(err)
	}
	if asJSON(got) != asJSON(consumer) {
		t.Fatalf("APIKeyByHash\n got: %s\nwant: %s", asJSON(got), asJSON(consumer))
	}
	_, err = e.s.APIKeyByHash(e.ctx, hashOf("tk_unknown"))
	wantCode(t, err, tokenkeeper.ENOTFOUND)

	for name, k := range map[string]*tokenkeeper.APIKey{
		"duplicate name": {Name: "admin", Hash: hashOf("other"), Role: tokenkeeper.RoleAdmin},
		"duplicate hash": {Name: "other", Hash: hashOf(adminKey), Role: tokenkeeper.RoleAdmin},
	} {
		wantCode(t, e.s.CreateAPIKey(e.ctx, k), tokenkeeper.ECONFLICT)
		if k.ID != "" {
			t.Errorf("%s: rejected key got an id", name)
		}
	}
	for name, k := range map[string]*tokenkeeper.APIKey{
		"nil":         nil,
		"no hash":     {Name: "x", Role: tokenkeeper.RoleAdmin},
		"short hash":  {Name: "x", Hash: []byte("short"), Role: tokenkeeper.RoleAdmin},
		"bad role":    {Name: "x", Hash: hashOf("x"), Role: "root"},
		"bad name":    {Name: "no spaces", Hash: hashOf("x"), Role: tokenkeeper.RoleAdmin},
		"bad granted": {Name: "x", Hash: hashOf("x"), Role: tokenkeeper.RoleConsumer, Credentials: []string{"a b"}},
	} {
		if err := e.s.CreateAPIKey(e.ctx, k); tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("%s: %v, want EINVALID", name, err)
		}
	}

	// Revoke by name, then by id.
	revokedAt := e.clock.Add(time.Minute)
	if err := e.s.RevokeAPIKey(e.ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.APIKeyByHash(e.ctx, hashOf(consumerKey))
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	e.clock.Add(time.Minute)
	if err := e.s.RevokeAPIKey(e.ctx, consumer.ID); err != nil {
		t.Fatalf("revoking again: %v", err)
	}
	wantCode(t, e.s.RevokeAPIKey(e.ctx, "nope"), tokenkeeper.ENOTFOUND)

	keys, err := e.s.APIKeys(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Name != "admin" || keys[1].Name != "svc" {
		t.Fatalf("APIKeys = %s", asJSON(keys))
	}
	if !keys[0].RevokedAt.IsZero() || !keys[1].RevokedAt.Equal(revokedAt) {
		t.Fatalf("revocation times: %v, %v (want zero, %v)", keys[0].RevokedAt, keys[1].RevokedAt, revokedAt)
	}
	if !bytes.Equal(keys[0].Hash, hashOf(adminKey)) {
		t.Fatal("APIKeys lost the hash")
	}
	if err := e.s.RevokeAPIKey(e.ctx, admin.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.APIKeyByHash(e.ctx, hashOf(adminKey))
	wantCode(t, err, tokenkeeper.ENOTFOUND)

	// API keys are stored as hashes only.
	checkNoSecret(t, "raw database dump", e.RawDump(t), []string{adminKey, consumerKey})
}

// eventPruner is the part of a store that prunes events by age.
type eventPruner interface {
	PruneEvents(ctx context.Context, now time.Time, limit int) (int, error)
}

// testPruneEvents: PruneEvents deletes refresh events older than 12 hours
// and operator events older than 90 days (the default retention), at most
// limit per call, refresh events first, and nothing younger.
func testPruneEvents(e *env) {
	t := e.t
	p, ok := e.s.(eventPruner)
	if !ok {
		t.Fatal("the store does not prune events (PruneEvents)")
	}
	c := e.create(newCred("old"))
	add := func(kind string, age time.Duration) *tokenkeeper.Event {
		ev := &tokenkeeper.Event{CredentialID: c.ID, CredentialName: c.Name, Kind: kind, Time: start.Add(-age),
			Outcome: tokenkeeper.OutcomeOK, Actor: "refresher:x"}
		if err := e.s.AddEvent(e.ctx, ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	add(tokenkeeper.EventRefresh, 30*time.Hour)
	add(tokenkeeper.EventRefresh, 25*time.Hour)
	young := add(tokenkeeper.EventRefresh, 11*time.Hour)
	add(tokenkeeper.EventCreated, 100*24*time.Hour)
	kept := add(tokenkeeper.EventCreated, 30*time.Hour)
	e.clock.Set(start)

	n, err := p.PruneEvents(e.ctx, start, 1)
	if err != nil || n != 1 {
		t.Fatalf("PruneEvents(limit 1) = %d, %v; want 1", n, err)
	}
	if n, err = p.PruneEvents(e.ctx, start, 10); err != nil || n != 2 {
		t.Fatalf("second PruneEvents = %d, %v; want 2", n, err)
	}
	if n, err = p.PruneEvents(e.ctx, start, 10); err != nil || n != 0 {
		t.Fatalf("third PruneEvents = %d, %v; want 0", n, err)
	}
	got := e.events(c.Name)
	if len(got) != 2 || got[0].ID != young.ID || got[1].ID != kept.ID {
		t.Fatalf("kept %s; want the refresh event of 11 h ago and the created event of 30 h ago", asJSON(got))
	}
	for _, limit := range []int{0, -1, 10_001} {
		_, err := p.PruneEvents(e.ctx, start, limit)
		wantCode(t, err, tokenkeeper.EINVALID)
	}
	_, err = p.PruneEvents(e.ctx, time.Time{}, 10)
	wantCode(t, err, tokenkeeper.EINVALID)
}
