package storetest

import (
	"fmt"
	"reflect"
	"regexp"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

var idRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func testCreateAndRead(e *env) {
	t := e.t
	e.clock.Set(start)
	c := newCred("github")
	c.Token = &tokenkeeper.Token{AccessToken: secret("access"), TokenType: "Bearer", ExpiresAt: start.Add(time.Hour + 987654321)}
	e.create(c)

	if !idRE.MatchString(c.ID) {
		t.Errorf("ID = %q, want 32 random hex digits", c.ID)
	}
	if c.Version != 1 {
		t.Errorf("Version = %d, want 1", c.Version)
	}
	if c.Status != tokenkeeper.StatusActive {
		t.Errorf("Status = %q, want active by default", c.Status)
	}
	if !c.CreatedAt.Equal(start) || !c.UpdatedAt.Equal(start) {
		t.Errorf("CreatedAt, UpdatedAt = %v, %v; want %v (sub-second precision kept)", c.CreatedAt, c.UpdatedAt, start)
	}
	if !c.NextRefreshAt.Equal(start) {
		t.Errorf("NextRefreshAt = %v, want now (%v): a new credential refreshes at once", c.NextRefreshAt, start)
	}
	if want := start.Add(time.Hour + 987654000); !c.Token.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want %v (microseconds kept)", c.Token.ExpiresAt, want)
	}

	got := e.get("github")
	sameCredential(t, got, c)
	byID, err := e.s.CredentialByID(e.ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameCredential(t, byID, c)

	// A client credentials credential without token, scopes or params, and
	// an explicit schedule.
	cc := &tokenkeeper.Credential{
		Name: "a-service", TokenURL: "http://127.0.0.1:9999/token", GrantType: tokenkeeper.GrantClientCredentials,
		ClientID: "svc", ClientSecret: secret("svc"), AuthStyle: tokenkeeper.AuthStyleBody,
		NextRefreshAt: start.Add(time.Minute), Status: tokenkeeper.StatusDisabled,
	}
	e.create(cc)
	got = e.get("a-service")
	sameCredential(t, got, cc)
	if got.Token != nil || got.Scopes != nil || got.Params != nil || got.RefreshToken != "" {
		t.Errorf("empty fields came back non-empty: %+v", got)
	}
	e.create(newCred("m"))

	all, err := e.s.Credentials(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range all {
		names = append(names, c.Name)
	}
	if fmt.Sprint(names) != "[a-service github m]" {
		t.Errorf("Credentials order = %v, want by name", names)
	}
	sameCredential(t, all[1], c)

	_, err = e.s.Credential(e.ctx, "missing")
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	_, err = e.s.CredentialByID(e.ctx, "0123456789abcdef0123456789abcdef")
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	_, err = e.s.Events(e.ctx, "missing", 10)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
}

func testCreateInvalid(e *env) {
	t := e.t
	cases := map[string]func(c *tokenkeeper.Credential){
		"bad name":              func(c *tokenkeeper.Credential) { c.Name = "has space" },
		"empty name":            func(c *tokenkeeper.Credential) { c.Name = "" },
		"http token url":        func(c *tokenkeeper.Credential) { c.TokenURL = "http://provider.example/token" },
		"no refresh token":      func(c *tokenkeeper.Credential) { c.RefreshToken = "" },
		"bad grant":             func(c *tokenkeeper.Credential) { c.GrantType = "password" },
		"no client id":          func(c *tokenkeeper.Credential) { c.ClientID = "" },
		"no auth style":         func(c *tokenkeeper.Credential) { c.AuthStyle = "" },
		"negative lead":         func(c *tokenkeeper.Credential) { c.RefreshLead = -time.Second },
		"bad status":            func(c *tokenkeeper.Credential) { c.Status = "paused" },
		"reserved param":        func(c *tokenkeeper.Credential) { c.Params = map[string]string{"client_secret": "x"} },
		"bad scope":             func(c *tokenkeeper.Credential) { c.Scopes = []string{"a b"} },
		"token without access":  func(c *tokenkeeper.Credential) { c.Token = &tokenkeeper.Token{TokenType: "Bearer"} },
		"negative failures":     func(c *tokenkeeper.Credential) { c.FailureCount = -1 },
		"next refresh too late": func(c *tokenkeeper.Credential) { c.NextRefreshAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	for name, mod := range cases {
		c := newCred("valid")
		mod(c)
		before := cloneCred(c)
		err := e.s.CreateCredential(e.ctx, c)
		if tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("%s: error = %v, want EINVALID", name, err)
		}
		checkErrNoSecret(t, err, secretsOf(c))
		if !reflect.DeepEqual(c, before) {
			t.Errorf("%s: the rejected credential was modified", name)
		}
	}
	wantCode(t, e.s.CreateCredential(e.ctx, nil), tokenkeeper.EINVALID)
	all, err := e.s.Credentials(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 0 {
		t.Fatalf("invalid input stored %d credentials", len(all))
	}
}

func testCreateDuplicateName(e *env) {
	t := e.t
	first := e.create(newCred("dup"))
	second := newCred("dup")
	err := e.s.CreateCredential(e.ctx, second)
	wantCode(t, err, tokenkeeper.ECONFLICT)
	checkErrNoSecret(t, err, secretsOf(second))
	if second.ID != "" {
		t.Error("the rejected credential was given an id")
	}
	sameCredential(t, e.get("dup"), first)
	all, _ := e.s.Credentials(e.ctx)
	if len(all) != 1 {
		t.Fatalf("%d credentials, want 1", len(all))
	}
}

func testUpdate(e *env) {
	t := e.t
	c := e.create(newCred("upd"))
	now := e.clock.Add(time.Minute)

	ev := &tokenkeeper.Event{Kind: tokenkeeper.EventUpdated, Outcome: tokenkeeper.OutcomeOK, Actor: "apikey:test", Message: "scopes changed"}
	got, err := e.s.UpdateCredential(e.ctx, "upd", tokenkeeper.CredentialUpdate{
		Scopes:      ptr([]string{"only"}),
		AuthStyle:   ptr(tokenkeeper.AuthStyleBody),
		Params:      ptr(map[string]string{"resource": "r1"}),
		RefreshLead: ptr(5 * time.Minute),
	}, ev)
	if err != nil {
		t.Fatal(err)
	}
	want := *c
	want.Scopes = []string{"only"}
	want.AuthStyle = tokenkeeper.AuthStyleBody
	want.Params = map[string]string{"resource": "r1"}
	want.RefreshLead = 5 * time.Minute
	want.UpdatedAt = now
	sameCredential(t, got, &want)
	sameCredential(t, e.get("upd"), &want)

	evs := e.events("upd")
	if len(evs) != 1 || evs[0].CredentialID != c.ID || evs[0].CredentialName != "upd" ||
		evs[0].Kind != tokenkeeper.EventUpdated || evs[0].Actor != "apikey:test" || !evs[0].Time.Equal(now) {
		t.Fatalf("events = %s", asJSON(evs))
	}

	// Clearing scopes and params, disabling, rescheduling.
	at := start.Add(3 * time.Hour)
	got, err = e.s.UpdateCredential(e.ctx, "upd", tokenkeeper.CredentialUpdate{
		Scopes: ptr([]string(nil)), Params: ptr(map[string]string{}),
		Status: ptr(tokenkeeper.StatusDisabled), NextRefreshAt: &at,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Scopes != nil || got.Params != nil || got.Status != tokenkeeper.StatusDisabled ||
		!got.NextRefreshAt.Equal(at) || got.Version != c.Version {
		t.Fatalf("after update: %s", asJSON(got))
	}
	if len(e.events("upd")) != 1 {
		t.Fatal("an update without event recorded one")
	}

	_, err = e.s.UpdateCredential(e.ctx, "missing", tokenkeeper.CredentialUpdate{}, nil)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
}

// testUpdateFencing checks which updates move the fencing version.
func testUpdateFencing(e *env) {
	t := e.t
	c := e.create(newCred("fence"))
	cases := []struct {
		name string
		upd  tokenkeeper.CredentialUpdate
		bump bool
	}{
		{"scopes", tokenkeeper.CredentialUpdate{Scopes: ptr([]string{"x"})}, false},
		{"lead", tokenkeeper.CredentialUpdate{RefreshLead: ptr(time.Minute)}, false},
		{"params", tokenkeeper.CredentialUpdate{Params: ptr(map[string]string{"a": "b"})}, false},
		{"auth style", tokenkeeper.CredentialUpdate{AuthStyle: ptr(tokenkeeper.AuthStyleBody)}, false},
		{"status", tokenkeeper.CredentialUpdate{Status: ptr(tokenkeeper.StatusActive)}, false},
		{"schedule", tokenkeeper.CredentialUpdate{NextRefreshAt: ptr(start.Add(time.Hour))}, false},
		{"same client id", tokenkeeper.CredentialUpdate{ClientID: ptr(c.ClientID)}, false},
		{"same token url", tokenkeeper.CredentialUpdate{TokenURL: ptr(c.TokenURL)}, false},
		{"token url", tokenkeeper.CredentialUpdate{TokenURL: ptr("https://other.example/token")}, true},
		{"client id", tokenkeeper.CredentialUpdate{ClientID: ptr("other-client")}, true},
		{"client secret", tokenkeeper.CredentialUpdate{ClientSecret: ptr(secret("new-cs"))}, true},
		{"refresh token", tokenkeeper.CredentialUpdate{RefreshToken: ptr(secret("new-rt"))}, true},
	}
	version := c.Version
	for _, tc := range cases {
		got, err := e.s.UpdateCredential(e.ctx, "fence", tc.upd, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want := version
		if tc.bump {
			want++
		}
		if got.Version != want {
			t.Errorf("%s: version %d -> %d, want %d", tc.name, version, got.Version, want)
		}
		version = got.Version
	}

	// An edit that does not move the version lets an in-flight refresh commit.
	claimed := e.claim(c.ID, "worker")
	if _, err := e.s.UpdateCredential(e.ctx, "fence", tokenkeeper.CredentialUpdate{Scopes: ptr([]string{"y"})}, nil); err != nil {
		t.Fatal(err)
	}
	rotated := secret("rotated")
	done, err := e.s.CompleteRefresh(e.ctx, c.ID, "worker", claimed.Version, &tokenkeeper.RefreshResult{
		Token: &tokenkeeper.Token{AccessToken: secret("at"), TokenType: "Bearer"}, RefreshToken: rotated,
		Status: tokenkeeper.StatusActive, NextRefreshAt: start.Add(time.Hour),
	})
	if err != nil {
		t.Fatalf("refresh after a scope edit: %v", err)
	}
	if done.RefreshToken != rotated || fmt.Sprint(done.Scopes) != "[y]" {
		t.Fatalf("after commit: %s", asJSON(done))
	}

	// An edit of the refresh token fences it out.
	claimed = e.claim(c.ID, "worker")
	if _, err := e.s.UpdateCredential(e.ctx, "fence", tokenkeeper.CredentialUpdate{RefreshToken: ptr(secret("reauth"))}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.CompleteRefresh(e.ctx, c.ID, "worker", claimed.Version, &tokenkeeper.RefreshResult{
		Token: &tokenkeeper.Token{AccessToken: secret("at2")}, Status: tokenkeeper.StatusActive,
	})
	wantCode(t, err, tokenkeeper.ECONFLICT)
}

func testUpdateReauthorizes(e *env) {
	t := e.t
	for _, status := range []tokenkeeper.Status{tokenkeeper.StatusNeedsReauth, tokenkeeper.StatusError} {
		for _, field := range []string{"client_secret", "refresh_token"} {
			name := fmt.Sprintf("re-%s-%s", status, field)
			c := newCred(name)
			c.Status = status
			c.FailureCount = 4
			c.LastError = "the provider said no"
			c.LastErrorCode = "invalid_grant"
			c.NextRefreshAt = start.Add(time.Hour)
			e.create(c)
			now := e.clock.Add(time.Second)

			var upd tokenkeeper.CredentialUpdate
			// Setting a secret to its current value still re-authorizes.
			if field == "client_secret" {
				upd.ClientSecret = ptr(c.ClientSecret)
			} else {
				upd.RefreshToken = ptr(c.RefreshToken)
			}
			got, err := e.s.UpdateCredential(e.ctx, name, upd, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tokenkeeper.StatusActive || got.FailureCount != 0 || !got.NextRefreshAt.Equal(now) ||
				got.LastError != "" || got.LastErrorCode != "" {
				t.Errorf("%s: after setting %s: %s", status, field, asJSON(got))
			}
			if got.Version != c.Version {
				t.Errorf("%s: setting %s to the same value moved the version", status, field)
			}
		}
	}

	// A disabled credential stays disabled; an explicit status wins.
	c := newCred("disabled")
	c.Status = tokenkeeper.StatusDisabled
	e.create(c)
	got, err := e.s.UpdateCredential(e.ctx, "disabled", tokenkeeper.CredentialUpdate{ClientSecret: ptr(secret("x"))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != tokenkeeper.StatusDisabled {
		t.Errorf("status = %s, want disabled", got.Status)
	}
	got, err = e.s.UpdateCredential(e.ctx, "disabled", tokenkeeper.CredentialUpdate{
		RefreshToken: ptr(secret("y")), Status: ptr(tokenkeeper.StatusNeedsReauth)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != tokenkeeper.StatusNeedsReauth {
		t.Errorf("status = %s, want the explicit needs_reauth", got.Status)
	}
}

func testUpdateInvalid(e *env) {
	t := e.t
	c := e.create(newCred("inv"))
	cc := newCred("cc")
	cc.GrantType = tokenkeeper.GrantClientCredentials
	e.create(cc)
	e.clock.Add(time.Minute)
	cases := map[string]struct {
		name string
		upd  tokenkeeper.CredentialUpdate
	}{
		"http url":              {"inv", tokenkeeper.CredentialUpdate{TokenURL: ptr("http://provider.example/t"), ClientSecret: ptr(secret("x"))}},
		"empty client id":       {"inv", tokenkeeper.CredentialUpdate{ClientID: ptr("")}},
		"bad status":            {"inv", tokenkeeper.CredentialUpdate{Status: ptr(tokenkeeper.Status("paused"))}},
		"negative lead":         {"inv", tokenkeeper.CredentialUpdate{RefreshLead: ptr(-time.Second)}},
		"bad scope":             {"inv", tokenkeeper.CredentialUpdate{Scopes: ptr([]string{""})}},
		"reserved param":        {"inv", tokenkeeper.CredentialUpdate{Params: ptr(map[string]string{"grant_type": "x"})}},
		"bad auth style":        {"inv", tokenkeeper.CredentialUpdate{AuthStyle: ptr(tokenkeeper.AuthStyle("probe"))}},
		"empty refresh token":   {"inv", tokenkeeper.CredentialUpdate{RefreshToken: ptr("")}},
		"empty client secret":   {"cc", tokenkeeper.CredentialUpdate{ClientSecret: ptr("")}},
		"zero schedule":         {"inv", tokenkeeper.CredentialUpdate{NextRefreshAt: ptr(time.Time{})}},
		"schedule out of range": {"inv", tokenkeeper.CredentialUpdate{NextRefreshAt: ptr(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))}},
	}
	for name, tc := range cases {
		_, err := e.s.UpdateCredential(e.ctx, tc.name, tc.upd, &tokenkeeper.Event{Kind: tokenkeeper.EventUpdated})
		if tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("%s: error = %v, want EINVALID", name, err)
		}
		checkErrNoSecret(t, err, append(secretsOf(c), secretsOf(cc)...))
	}
	// A valid update with an invalid event changes nothing either.
	_, err := e.s.UpdateCredential(e.ctx, "inv", tokenkeeper.CredentialUpdate{ClientSecret: ptr(secret("x"))}, &tokenkeeper.Event{})
	wantCode(t, err, tokenkeeper.EINVALID)
	sameCredential(t, e.get("inv"), c)
	sameCredential(t, e.get("cc"), cc)
	if n := len(e.events("inv")) + len(e.events("cc")); n != 0 {
		t.Errorf("rejected updates recorded %d events", n)
	}
}

func testDelete(e *env) {
	t := e.t
	c := e.create(newCred("del"))
	other := e.create(newCred("keep"))
	for _, n := range []string{"del", "keep"} {
		if err := e.s.AddEvent(e.ctx, &tokenkeeper.Event{CredentialName: n, Kind: tokenkeeper.EventCreated}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.s.DeleteCredential(e.ctx, "del"); err != nil {
		t.Fatal(err)
	}
	_, err := e.s.Credential(e.ctx, "del")
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	_, err = e.s.CredentialByID(e.ctx, c.ID)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	wantCode(t, e.s.DeleteCredential(e.ctx, "del"), tokenkeeper.ENOTFOUND)
	_, err = e.s.Events(e.ctx, "del", 10)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	sameCredential(t, e.get("keep"), other)
	if len(e.events("keep")) != 1 {
		t.Fatal("deleting a credential removed another one's events")
	}

	// The name is free again, and the new credential has none of the old events.
	again := e.create(newCred("del"))
	if again.ID == c.ID {
		t.Fatal("a new credential reused the deleted one's id")
	}
	if evs := e.events("del"); len(evs) != 0 {
		t.Fatalf("the new credential inherited %d events", len(evs))
	}
}
