package storetest

import (
	"bytes"
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
