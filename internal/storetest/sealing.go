package storetest

import (
	"bytes"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
)

// testSecretsNotAtRest is invariant 5: a raw scan of the database finds no
// plaintext secret, whatever path the secret took into the store.
func testSecretsNotAtRest(e *env) {
	t := e.t
	var secrets []string
	var positive []string // non-secret values that must be in the dump

	a := newCred("alpha")
	a.Token = &tokenkeeper.Token{AccessToken: secret("initial-access"), TokenType: "Bearer", ExpiresAt: start.Add(time.Hour)}
	// Params named like secrets are sealed too (L2); others are not.
	a.Params = map[string]string{"client_assertion": secret("assertion"), "X-Api-Token": secret("api-token"),
		"Password": secret("param-password"), "audience": "https://api.example/visible-audience"}
	e.create(a)
	secrets = append(secrets, secretsOf(a)...)
	secrets = append(secrets, a.Params["client_assertion"], a.Params["X-Api-Token"], a.Params["Password"])
	positive = append(positive, a.ClientID, a.TokenURL, "visible-audience")

	b := newCred("beta")
	b.GrantType = tokenkeeper.GrantClientCredentials
	b.RefreshToken = ""
	e.create(b)
	secrets = append(secrets, secretsOf(b)...)

	// A refresh rotates both tokens.
	claimed := e.claim(a.ID, "w")
	rotated, access := secret("rotated-refresh"), secret("refreshed-access")
	secrets = append(secrets, rotated, access)
	if _, err := e.s.CompleteRefresh(e.ctx, a.ID, "w", claimed.Version, &tokenkeeper.RefreshResult{
		Token: &tokenkeeper.Token{AccessToken: access, TokenType: "Bearer", ExpiresAt: start.Add(2 * time.Hour)}, RefreshToken: rotated,
		Status: tokenkeeper.StatusActive, NextRefreshAt: start.Add(time.Hour),
		Event: &tokenkeeper.Event{Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeOK, Message: "refreshed"},
	}); err != nil {
		t.Fatal(err)
	}
	// An operator re-authorizes with new secrets.
	newCS, newRT := secret("updated-client-secret"), secret("updated-refresh")
	secrets = append(secrets, newCS, newRT)
	if _, err := e.s.UpdateCredential(e.ctx, "alpha", tokenkeeper.CredentialUpdate{ClientSecret: &newCS, RefreshToken: &newRT},
		&tokenkeeper.Event{Kind: tokenkeeper.EventUpdated, Message: "re-authorized"}); err != nil {
		t.Fatal(err)
	}
	// A key rotation re-seals everything.
	if _, err := e.s.RotateKey(e.ctx); err != nil {
		t.Fatal(err)
	}

	// Every secret still opens...
	got := e.get("alpha")
	if got.ClientSecret != newCS || got.RefreshToken != newRT || got.Token.AccessToken != access {
		t.Fatal("secrets did not survive the round trip")
	}
	if asJSON(got.Params) != asJSON(a.Params) {
		t.Fatal("params did not survive the round trip")
	}
	// ...and none is in the raw bytes.
	dump := e.RawDump(t)
	checkNoSecret(t, "raw database dump", dump, secrets)
	for _, p := range positive {
		if !bytes.Contains(dump, []byte(p)) {
			t.Fatalf("raw dump lacks the non-secret %q: the dump does not cover the data", p)
		}
	}
}

// testCiphertextMoved checks that the associated data binds a sealed value
// to its row and column: moved with raw SQL, it no longer opens.
func testCiphertextMoved(e *env) {
	t := e.t
	a := e.create(newCred("a"))
	b := e.create(newCred("b"))
	secrets := append(secretsOf(a), secretsOf(b)...)

	// Another provider's client secret.
	if err := e.Exec(e.ctx, `UPDATE providers SET client_secret = (SELECT client_secret FROM providers WHERE id = $1) WHERE id = $2`, a.ProviderID, b.ProviderID); err != nil {
		t.Fatal(err)
	}
	_, err := e.s.Credential(e.ctx, "b")
	if err == nil {
		t.Fatal("a client secret moved from another row opened")
	}
	checkErrNoSecret(t, err, secrets)
	if _, err := e.s.Credentials(e.ctx); err == nil {
		t.Fatal("Credentials listed a row with a moved secret")
	}
	if _, err := e.s.Provider(e.ctx, b.Provider); err == nil {
		t.Fatal("Provider opened a moved client secret")
	}

	// A credential's refresh token moved to its provider's client secret
	// (same id in another table would not help either).
	if err := e.Exec(e.ctx, `UPDATE providers SET client_secret = (SELECT refresh_token FROM credentials WHERE id = $1) WHERE id = $2`, a.ID, a.ProviderID); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.Credential(e.ctx, "a")
	if err == nil {
		t.Fatal("a refresh token moved to the client secret column opened")
	}
	checkErrNoSecret(t, err, secrets)
	_, err = e.s.CredentialByID(e.ctx, a.ID)
	if err == nil {
		t.Fatal("CredentialByID opened a moved secret")
	}

	// The same row's other column.
	c := e.create(newCred("c"))
	if err := e.Exec(e.ctx, `UPDATE credentials SET access_token = refresh_token WHERE id = $1`, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Credential(e.ctx, "c"); err == nil {
		t.Fatal("a refresh token moved to the access token column opened")
	}
}

// keyIDOf returns the data key id of a sealed column of a credential (the
// client secret: of its provider).
func (e *env) keyIDOf(id, column string) uint32 {
	e.t.Helper()
	var ct []byte
	query := `SELECT ` + column + ` FROM credentials WHERE id = $1`
	if column == "client_secret" {
		query = `SELECT p.client_secret FROM providers p JOIN credentials c ON c.provider_id = p.id WHERE c.id = $1`
	}
	if err := e.QueryRow(e.ctx, query, id).Scan(&ct); err != nil {
		e.t.Fatal(err)
	}
	kid, err := seal.KeyID(ct)
	if err != nil {
		e.t.Fatalf("%s of %s: %v", column, id, err)
	}
	return kid
}

func testRotateKey(e *env) {
	t := e.t
	cc := newCred("cc")
	cc.GrantType, cc.RefreshToken = tokenkeeper.GrantClientCredentials, ""
	e.create(cc)                  // 1 sealed value
	rt := e.create(newCred("rt")) // 2
	tok := newCred("tok")
	tok.Token = &tokenkeeper.Token{AccessToken: secret("at"), TokenType: "Bearer"}
	e.create(tok) // 3
	before := e.keyIDOf(rt.ID, "refresh_token")

	n, err := e.s.RotateKey(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("RotateKey re-sealed %d secrets, want 6", n)
	}
	after := e.keyIDOf(rt.ID, "refresh_token")
	if after == before {
		t.Fatalf("refresh token still sealed with key %d", before)
	}
	for _, c := range []*tokenkeeper.Credential{cc, rt, tok} {
		sameCredential(t, e.get(c.Name), c)
		for _, col := range []string{"client_secret", "refresh_token", "access_token"} {
			var ct []byte
			query := `SELECT ` + col + ` FROM credentials WHERE id = $1`
			if col == "client_secret" {
				query = `SELECT p.client_secret FROM providers p JOIN credentials c ON c.provider_id = p.id WHERE c.id = $1`
			}
			if err := e.QueryRow(e.ctx, query, c.ID).Scan(&ct); err != nil {
				t.Fatal(err)
			}
			if ct != nil {
				if kid, _ := seal.KeyID(ct); kid != after {
					t.Errorf("%s.%s sealed with key %d, want %d", c.Name, col, kid, after)
				}
			}
		}
	}
	// New writes use the new key.
	fresh := e.create(newCred("fresh"))
	if kid := e.keyIDOf(fresh.ID, "client_secret"); kid != after {
		t.Errorf("new credential sealed with key %d, want %d", kid, after)
	}
	n, err = e.s.RotateKey(e.ctx)
	if err != nil || n != 8 {
		t.Fatalf("second rotation: %d, %v; want 8", n, err)
	}
}

// testOldKeyStillOpens adds a key without re-sealing: rows sealed with the
// older key keep opening, new ones use the new key.
func testOldKeyStillOpens(e *env) {
	t := e.t
	old := e.create(newCred("old"))
	oldKey := e.keyIDOf(old.ID, "client_secret")
	if err := e.AddDataKey(e.ctx); err != nil {
		t.Fatal(err)
	}
	sameCredential(t, e.get("old"), old)
	fresh := e.create(newCred("new"))
	newKey := e.keyIDOf(fresh.ID, "client_secret")
	if newKey == oldKey {
		t.Fatalf("new credential sealed with the old key %d", oldKey)
	}
	sameCredential(t, e.get("new"), fresh)
	// A peer opened now loads both keys.
	peer := e.OpenPeer(t)
	all, err := peer.Credentials(e.ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("peer: %v", err)
	}
	sameCredential(t, all[1], old)
}

// testRotateKeyPeer rotates on one store while a peer that loaded the keys
// before keeps working: it opens rows sealed with the key it has never seen,
// and rows it seals with its older key open everywhere.
func testRotateKeyPeer(e *env) {
	t := e.t
	a := e.create(newCred("a"))
	peer := e.OpenPeer(t)
	if _, err := e.s.RotateKey(e.ctx); err != nil {
		t.Fatal(err)
	}
	got, err := peer.Credential(e.ctx, "a")
	if err != nil {
		t.Fatalf("peer reading a row sealed with a newer key: %v", err)
	}
	sameCredential(t, got, a)
	b := newCred("b")
	if err := peer.CreateCredential(e.ctx, b); err != nil {
		t.Fatal(err)
	}
	sameCredential(t, e.get("b"), b)
	if n, err := peer.RotateKey(e.ctx); err != nil || n != 4 {
		t.Fatalf("rotation on the peer: %d, %v", n, err)
	}
	sameCredential(t, e.get("a"), a)
	sameCredential(t, e.get("b"), b)
}
