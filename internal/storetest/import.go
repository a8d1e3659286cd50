package storetest

import (
	"context"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// importer is the part of a store that inserts credentials in bulk.
type importer interface {
	ImportCredentials(ctx context.Context, provider string, cs []*tokenkeeper.Credential) error
	ImportEvents(ctx context.Context, events []*tokenkeeper.Event) error
}

// testImportCredentials: ImportCredentials inserts credentials of a named
// provider with their state, sealed at rest, claimable on schedule; a bad
// or taken name inserts nothing.
func testImportCredentials(e *env) {
	t := e.t
	im, ok := e.s.(importer)
	if !ok {
		t.Fatal("the store does not import credentials (ImportCredentials)")
	}
	e.createProvider(newProvider("bulk"))
	const n = 1203 // more than two INSERT statements' worth
	var cs []*tokenkeeper.Credential
	var secrets []string
	for i := range n {
		c := &tokenkeeper.Credential{Name: fmt.Sprintf("bulk-%04d", i), GrantType: tokenkeeper.GrantRefreshToken,
			RefreshToken: secret(fmt.Sprintf("rt%d", i)),
			Token: &tokenkeeper.Token{AccessToken: secret(fmt.Sprintf("at%d", i)), TokenType: "Bearer",
				ExpiresAt: start.Add(time.Hour + time.Duration(i)*time.Second)},
			LastRefreshAt: start.Add(time.Duration(i) * time.Second),
			NextRefreshAt: start.Add(55*time.Minute + time.Duration(i)*time.Second)}
		if i == 0 {
			c.NextRefreshAt = start.Add(-time.Second) // due
		}
		cs = append(cs, c)
	}
	for _, c := range cs[:3] {
		secrets = append(secrets, c.RefreshToken, c.Token.AccessToken)
	}
	if err := im.ImportCredentials(e.ctx, "bulk", cs); err != nil {
		t.Fatal(err)
	}
	got, err := e.s.Credential(e.ctx, "bulk-0002")
	if err != nil {
		t.Fatal(err)
	}
	want := cs[2]
	if got.ID != want.ID || got.ID == "" {
		t.Fatalf("imported id %q, the input says %q", got.ID, want.ID)
	}
	if got.Provider != "bulk" || got.RefreshToken != want.RefreshToken || got.Token == nil ||
		got.Token.AccessToken != want.Token.AccessToken || !got.Token.ExpiresAt.Equal(want.Token.ExpiresAt) ||
		!got.NextRefreshAt.Equal(want.NextRefreshAt) || !got.LastRefreshAt.Equal(want.LastRefreshAt) ||
		got.Status != tokenkeeper.StatusActive || got.Version != 1 || asJSON(got.Scopes) != asJSON([]string{"openid", "email"}) {
		t.Fatalf("imported credential: %s", asJSON(got))
	}
	all, err := e.s.FilterCredentials(e.ctx, tokenkeeper.CredentialFilter{Provider: "bulk"})
	if err != nil || len(all) != n {
		t.Fatalf("FilterCredentials = %d, %v; want %d", len(all), err, n)
	}
	checkNoSecret(t, "raw database dump", e.RawDump(t), secrets)
	// On schedule: only the one due is claimed.
	claimed, err := e.s.ClaimDue(e.ctx, "w", start, time.Minute, 10)
	if err != nil || len(claimed) != 1 || claimed[0].Name != "bulk-0000" {
		t.Fatalf("ClaimDue after import = %d, %v; want bulk-0000", len(claimed), err)
	}

	// A history of events, as it is: nothing trimmed.
	var history []*tokenkeeper.Event
	for i := range 600 {
		history = append(history, &tokenkeeper.Event{CredentialID: want.ID, CredentialName: want.Name, Kind: tokenkeeper.EventRefresh,
			Outcome: tokenkeeper.OutcomeOK, Time: start.Add(-time.Duration(i) * time.Minute), Latency: time.Millisecond, Actor: "refresher:old"})
	}
	if err := im.ImportEvents(e.ctx, history); err != nil {
		t.Fatal(err)
	}
	evs, err := e.s.Events(e.ctx, want.Name, 1000)
	if err != nil || len(evs) != 600 || !evs[0].Time.Equal(start) || evs[599].Actor != "refresher:old" {
		t.Fatalf("Events after ImportEvents = %d, %v", len(evs), err)
	}
	wantCode(t, im.ImportEvents(e.ctx, []*tokenkeeper.Event{{CredentialID: want.ID, CredentialName: want.Name, Kind: "refresh"}}), tokenkeeper.EINVALID)
	wantCode(t, im.ImportEvents(e.ctx, []*tokenkeeper.Event{{CredentialName: want.Name, Kind: "refresh", Time: start}}), tokenkeeper.EINVALID)

	// A taken name, a bad name, an unknown provider: nothing is inserted.
	taken := []*tokenkeeper.Credential{{Name: "bulk-new", GrantType: tokenkeeper.GrantClientCredentials},
		{Name: "bulk-0001", GrantType: tokenkeeper.GrantClientCredentials}}
	wantCode(t, im.ImportCredentials(e.ctx, "bulk", taken), tokenkeeper.ECONFLICT)
	bad := []*tokenkeeper.Credential{{Name: "bulk-new", GrantType: tokenkeeper.GrantClientCredentials},
		{Name: "bad name!", GrantType: tokenkeeper.GrantClientCredentials}}
	wantCode(t, im.ImportCredentials(e.ctx, "bulk", bad), tokenkeeper.EINVALID)
	badID := []*tokenkeeper.Credential{{Name: "bulk-new", GrantType: tokenkeeper.GrantClientCredentials, ID: "not-an-id"}}
	wantCode(t, im.ImportCredentials(e.ctx, "bulk", badID), tokenkeeper.EINVALID)
	// A given id is kept.
	given := []*tokenkeeper.Credential{{Name: "bulk-given", GrantType: tokenkeeper.GrantClientCredentials, ID: "00112233445566778899aabbccddeeff"}}
	if err := im.ImportCredentials(e.ctx, "bulk", given); err != nil {
		t.Fatal(err)
	}
	if got := e.get("bulk-given"); got.ID != "00112233445566778899aabbccddeeff" {
		t.Fatalf("given id not kept: %q", got.ID)
	}
	wantCode(t, im.ImportCredentials(e.ctx, "nope", taken[:1]), tokenkeeper.ENOTFOUND)
	if _, err := e.s.Credential(e.ctx, "bulk-new"); tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTFOUND {
		t.Fatalf("bulk-new after failed imports: %v; want ENOTFOUND", err)
	}
}
