package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/postgres"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
)

// TestOpenReleaseDatabase builds, for every dialect, the database a
// released tokenkeeper wrote (testdata/release-*.sql: its migrations, then
// its rows, one in every table), opens it with this store, which applies
// any newer migration, and reads everything back, sealed secrets included;
// then it refreshes, rotates the data key and writes new rows.
func TestOpenReleaseDatabase(t *testing.T) {
	migrations := map[string]fs.FS{"sqlite": sqlite.Migrations, "postgres": postgres.Migrations}
	for _, d := range databases(t) {
		t.Run(d.dialect, func(t *testing.T) {
			fixture, err := os.ReadFile("testdata/release-" + d.dialect + ".sql")
			if err != nil {
				t.Fatal(err)
			}
			raw := d.raw(t)
			lines := strings.Split(strings.TrimSpace(string(fixture)), "\n")
			names, ok := strings.CutPrefix(lines[1], "-- migrations: ")
			if !ok {
				t.Fatalf("fixture line 2 = %q", lines[1])
			}
			for _, name := range strings.Fields(names) {
				body, err := fs.ReadFile(migrations[d.dialect], name)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := raw.Exec(string(body)); err != nil {
					t.Fatalf("migration %s: %v", name, err)
				}
			}
			for _, line := range lines {
				if !strings.HasPrefix(line, "--") {
					if _, err := raw.Exec(line); err != nil {
						t.Fatalf("%v: %.100s", err, line)
					}
				}
			}
			addTwin(t, raw)
			raw.Close()
			now := fixtureEpoch.Add(7 * time.Minute)
			db := d.open(t, fixtureKey, 0, func() time.Time { return now })
			checkRelease(t, db)
			checkSecretsMoved(t, d.raw(t))
			continueRelease(t, db, &now)
			checkContinued(t, d.open(t, fixtureKey, 0, nil))
		})
	}
}

// addTwin adds to the release database, as the release would have
// written it, a credential "compat-cc-twin" of the same client as
// compat-cc (token URL, client id, auth style and secret), its client
// secret sealed for its own row: migration 0003 and the store's upgrade
// must give both one provider.
func addTwin(t *testing.T, raw *sql.DB) {
	t.Helper()
	var wrapped []byte
	if err := raw.QueryRow(`SELECT wrapped FROM data_keys WHERE id = 2`).Scan(&wrapped); err != nil {
		t.Fatal(err)
	}
	key, err := seal.UnwrapKey(fixtureKey, 2, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	ring := seal.NewRing()
	if err := ring.Add(2, key); err != nil {
		t.Fatal(err)
	}
	const id = "0123456789abcdef0123456789abcdef"
	ct, err := ring.Seal([]byte("compat-cc-secret"), seal.AD("credentials", id, "client_secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO credentials (id, name, token_url, grant_type, client_id, client_secret, refresh_token,
			scopes, auth_style, params, refresh_lead, access_token, token_type, expires_at, status, failure_count, last_error,
			last_error_code, last_refresh_at, next_refresh_at, version, lease_owner, lease_expires_at, created_at, updated_at)
		SELECT $1, 'compat-cc-twin', token_url, grant_type, client_id, $2, NULL, scopes, auth_style, params, 0, NULL, '', NULL,
			'disabled', 0, '', '', NULL, next_refresh_at, 1, '', NULL, created_at, updated_at
		FROM credentials WHERE name = 'compat-cc'`, id, ct); err != nil {
		t.Fatal(err)
	}
}

// checkSecretsMoved checks at rest that the client secrets left the
// credentials table and live once per provider, sealed for its own row.
func checkSecretsMoved(t *testing.T, raw *sql.DB) {
	t.Helper()
	var sealed, legacy int
	if err := raw.QueryRow(`SELECT COUNT(client_secret), COUNT(*) FILTER (WHERE client_secret_ad <> '') FROM providers`).Scan(&sealed, &legacy); err != nil {
		t.Fatal(err)
	}
	if sealed != 2 || legacy != 0 {
		t.Errorf("providers: %d sealed secrets, %d still sealed for a credential row; want 2 and 0", sealed, legacy)
	}
	if _, err := raw.Exec(`SELECT client_secret FROM credentials`); err == nil {
		t.Error("credentials still has a client_secret column")
	}
}

// ts formats a time of the fixture as its offset from fixtureEpoch.
func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Sub(fixtureEpoch).String()
}

// equal fails the test when got differs from want.
func equal(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

// checkRelease reads back what fill wrote (see compat_fill_test.go).
func checkRelease(t *testing.T, db store) {
	t.Helper()
	ctx := context.Background()
	creds, err := db.Credentials(ctx)
	if err != nil || len(creds) != 3 {
		t.Fatalf("Credentials: %d, %v", len(creds), err)
	}
	cc, twin, rc := creds[0], creds[1], creds[2]
	// Migration 0003 gave each credential a provider; the same client
	// shares one, named after the first credential, its secret stored once.
	if cc.Provider != "compat-cc" || twin.ProviderID != cc.ProviderID || twin.ClientSecret != "compat-cc-secret" ||
		rc.Provider != "compat-refresh" || rc.ProviderID == cc.ProviderID {
		t.Errorf("providers: cc %s/%s, twin %s/%s, refresh %s/%s", cc.Provider, cc.ProviderID, twin.Provider, twin.ProviderID, rc.Provider, rc.ProviderID)
	}
	provs, err := db.Providers(ctx)
	if err != nil || len(provs) != 2 {
		t.Fatalf("Providers: %v, %v", provs, err)
	}
	for _, p := range provs {
		equal(t, "provider "+p.Name, fmt.Sprintf("%s %s %s %s %s %v %d", p.Name, p.TokenURL, p.ClientID, p.ClientSecret, p.AuthStyle, p.PKCE, p.Version),
			map[string]string{
				"compat-cc":      "compat-cc https://provider.example/token client-2 compat-cc-secret body S256 1",
				"compat-refresh": "compat-refresh https://provider.example/token client-1 compat-client-secret header S256 1",
			}[p.Name])
	}
	equal(t, "client credentials", fmt.Sprintf("%s %s %s %s %q %q %v %v %s %s %d %q %q %s %s %s %s %s",
		cc.Name, cc.TokenURL, cc.GrantType, cc.ClientID, cc.ClientSecret, cc.RefreshToken, cc.Scopes, cc.Params,
		cc.AuthStyle, cc.Status, cc.FailureCount, cc.LastError, cc.LastErrorCode, cc.LeaseOwner, ts(cc.LeaseExpiresAt),
		ts(cc.NextRefreshAt), ts(cc.CreatedAt), ts(cc.UpdatedAt)),
		`compat-cc https://provider.example/token client_credentials client-2 "compat-cc-secret" "" [] map[] body error 2 "provider said no" "temporarily_unavailable" holder 1h3m0s 0s 0s 0s`)
	if cc.Token != nil {
		t.Errorf("compat-cc has a token")
	}
	equal(t, "refresh token credential", fmt.Sprintf("%s %s %s %q %q %v %v %s %s %s %s %s %s %s %q %s %s %s",
		rc.Name, rc.GrantType, rc.ClientID, rc.ClientSecret, rc.RefreshToken, rc.Scopes, rc.Params, rc.AuthStyle,
		rc.RefreshLead, rc.Status, ts(rc.LastRefreshAt), ts(rc.NextRefreshAt), ts(rc.CreatedAt), ts(rc.UpdatedAt),
		rc.Token.AccessToken, rc.Token.TokenType, ts(rc.Token.ExpiresAt), rc.LeaseOwner+"none"),
		`compat-refresh refresh_token client-1 "compat-client-secret" "compat-refresh-token-2" [read write] map[audience:api] header 2m0s active 2m0s 55m0s 0s 2m0s "compat-access-token-2" Bearer 1h2m0s none`)
	if byID, err := db.CredentialByID(ctx, rc.ID); err != nil || byID.Version != rc.Version || byID.RefreshToken != rc.RefreshToken {
		t.Errorf("CredentialByID: %+v, %v", byID, err)
	}
	for name, want := range map[string]string{
		"compat-refresh": "refresh ok refreshed 150ms refresher:old 2m0s",
		"compat-cc":      "updated ok  0s apikey:compat 3m0s",
	} {
		evs, err := db.Events(ctx, name, 100)
		if err != nil || len(evs) == 0 {
			t.Fatalf("Events(%s): %v, %v", name, evs, err)
		}
		e := evs[len(evs)-1]
		equal(t, "first event of "+name, fmt.Sprintf("%s %s %s %s %s %s", e.Kind, e.Outcome, e.Message, e.Latency, e.Actor, ts(e.Time)), want)
	}
	keys, err := db.APIKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("APIKeys: %v, %v", keys, err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, fmt.Sprintf("%s %s %s %x %v %s %s", k.Name, k.Prefix, k.Role, k.Hash[:4], k.Credentials, ts(k.CreatedAt), ts(k.RevokedAt)))
	}
	equal(t, "API keys", strings.Join(got, "; "), fmt.Sprintf("compat-admin tk_admin admin %x [] 3m0s 4m0s; compat-consumer tk_cons consumer %x [compat-refresh] 3m0s -",
		sum("admin key")[:4], sum("consumer key")[:4]))
	if k, err := db.APIKeyByHash(ctx, sum("consumer key")); err != nil || k.Name != "compat-consumer" {
		t.Errorf("APIKeyByHash: %v, %v", k, err)
	}
	if _, err := db.APIKeyByHash(ctx, sum("admin key")); tokenkeeper.ErrorCode(err) != tokenkeeper.ENOTFOUND {
		t.Errorf("APIKeyByHash(revoked) = %v", err)
	}
	u, err := db.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "user", fmt.Sprintf("%s %s %s %s %s", u.Username, u.Role, u.PasswordHash, ts(u.CreatedAt), ts(u.UpdatedAt)),
		"alice admin $argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA 4m0s 4m0s")
	tokens := map[string]*tokenkeeper.RefreshToken{}
	for _, h := range []string{"rt-1", "rt-2", "rt-3"} {
		rt, err := db.RefreshTokenByHash(ctx, sum(h))
		if err != nil || rt.UserID != u.ID {
			t.Fatalf("RefreshTokenByHash(%s): %+v, %v", h, rt, err)
		}
		tokens[h] = rt
		equal(t, "refresh token "+h, fmt.Sprintf("%s %s %s %s %s %s", ts(rt.AuthTime), ts(rt.CreatedAt), ts(rt.ExpiresAt),
			ts(rt.FamilyExpiresAt), ts(rt.RotatedAt), ts(rt.RevokedAt)), map[string]string{
			"rt-1": "4m0s 4m0s 1h4m0s 24h0m0s 5m0s -",
			"rt-2": "4m0s 5m0s 1h5m0s 24h0m0s - -",
			"rt-3": "5m0s 5m0s 1h5m0s 24h0m0s - 6m0s",
		}[h])
	}
	if tokens["rt-1"].FamilyID != tokens["rt-2"].FamilyID || tokens["rt-1"].FamilyID == tokens["rt-3"].FamilyID {
		t.Errorf("families: %s %s %s", tokens["rt-1"].FamilyID, tokens["rt-2"].FamilyID, tokens["rt-3"].FamilyID)
	}
	revs, err := db.Revocations(ctx, fixtureEpoch.Add(7*time.Minute))
	if err != nil || len(revs) != 1 || revs[0].FamilyID != tokens["rt-3"].FamilyID {
		t.Fatalf("Revocations: %v, %v", revs, err)
	}
	equal(t, "revocation", ts(revs[0].RevokedAt)+" "+ts(revs[0].ExpiresAt), "6m0s 21m0s")
	sc, err := db.ServiceClient(ctx, "compat-svc")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "service client", fmt.Sprintf("%s %x %v %s", sc.ClientID, sc.SecretHash[:4], sc.Credentials, ts(sc.CreatedAt)),
		fmt.Sprintf("compat-svc %x [compat-cc] 6m0s", sum("svc secret")[:4]))
	sks, err := db.SigningKeys(ctx)
	if err != nil || len(sks) != 1 {
		t.Fatalf("SigningKeys: %v, %v", sks, err)
	}
	equal(t, "signing key", fmt.Sprintf("%s %s %s %s", sks[0].ID, sks[0].Algorithm, sks[0].Secret, ts(sks[0].CreatedAt)),
		"compat-key-1 HS256 compat-signing-secret-0123456789abcdef 6m0s")
	audit, err := db.Audit(ctx, tokenkeeper.AuditFilter{Actor: "user:alice"})
	if err != nil || len(audit) == 0 {
		t.Fatalf("Audit: %v, %v", audit, err)
	}
	a := audit[len(audit)-1]
	equal(t, "audit", fmt.Sprintf("%d %s %s %s %s %s %s %s", a.ID, ts(a.Time), a.Actor, a.Action, a.Target, a.Outcome, a.RemoteAddr, a.Detail),
		"1 6m0s user:alice credential.create compat-refresh ok 127.0.0.1 created")
}

// continueRelease uses the opened database as a running broker would: it
// refreshes the due credential, records events and audit, rotates the data
// key and a refresh token.
func continueRelease(t *testing.T, db store, now *time.Time) {
	ctx := context.Background()
	*now = fixtureEpoch.Add(56 * time.Minute)
	due, err := db.ClaimDue(ctx, "new", *now, time.Minute, 10)
	if err != nil || len(due) != 1 || due[0].Name != "compat-refresh" || due[0].RefreshToken != "compat-refresh-token-2" {
		t.Fatalf("ClaimDue: %v, %v", due, err)
	}
	got, err := db.CompleteRefresh(ctx, due[0].ID, "new", due[0].Version, &tokenkeeper.RefreshResult{
		Token:  &tokenkeeper.Token{AccessToken: "compat-access-token-3", TokenType: "Bearer", ExpiresAt: now.Add(time.Hour)},
		Status: tokenkeeper.StatusActive, LastRefreshAt: *now, NextRefreshAt: now.Add(50 * time.Minute),
		Event: &tokenkeeper.Event{Kind: "refresh", Outcome: "ok", Actor: "refresher:new"}})
	if err != nil || got.RefreshToken != "compat-refresh-token-2" || got.Token.AccessToken != "compat-access-token-3" {
		t.Fatalf("CompleteRefresh: %+v, %v", got, err)
	}
	if evs, err := db.Events(ctx, "compat-refresh", 100); err != nil || len(evs) != 2 || evs[0].ID <= 2 || evs[0].Actor != "refresher:new" {
		t.Fatalf("events after a refresh: %v, %v", evs, err)
	}
	// Every credential is served on with its secret: what a refresh of each
	// would send.
	for _, name := range []string{"compat-cc", "compat-cc-twin"} {
		c, err := db.Credential(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		claimed, err := db.ClaimCredential(ctx, c.ID, "holder", *now, time.Minute)
		if err != nil || claimed.ClientSecret != "compat-cc-secret" || claimed.ClientID != "client-2" ||
			claimed.TokenURL != "https://provider.example/token" || claimed.AuthStyle != tokenkeeper.AuthStyleBody {
			t.Fatalf("claim %s: %+v, %v", name, claimed, err)
		}
		if _, err := db.CompleteRefresh(ctx, c.ID, "holder", claimed.Version, &tokenkeeper.RefreshResult{
			Status: c.Status, FailureCount: c.FailureCount, LastError: c.LastError, LastErrorCode: c.LastErrorCode}); err != nil {
			t.Fatal(err)
		}
	}
	rec := &tokenkeeper.AuditRecord{Actor: "user:bob", Action: "credential.refresh"}
	if err := db.AddAudit(ctx, rec); err != nil || rec.ID != 2 {
		t.Fatalf("AddAudit: id %d, %v", rec.ID, err)
	}
	if n, err := db.RotateKey(ctx); err != nil || n != 5 {
		t.Fatalf("RotateKey: %d, %v (want 5 secrets: 2 provider secrets, a refresh and an access token, a signing key)", n, err)
	}
	rt2, err := db.RefreshTokenByHash(ctx, sum("rt-2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RotateRefreshToken(ctx, rt2.ID, *now, &tokenkeeper.RefreshToken{Hash: sum("rt-4"), ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

// checkContinued reads back what continueRelease wrote, after a reopen:
// every secret opens after the rotation of the data key.
func checkContinued(t *testing.T, db store) {
	ctx := context.Background()
	rc, err := db.Credential(ctx, "compat-refresh")
	if err != nil || rc.Token.AccessToken != "compat-access-token-3" || rc.ClientSecret != "compat-client-secret" {
		t.Fatalf("compat-refresh after the rotation: %+v, %v", rc, err)
	}
	if cc, err := db.Credential(ctx, "compat-cc"); err != nil || cc.ClientSecret != "compat-cc-secret" {
		t.Fatalf("compat-cc after the rotation: %+v, %v", cc, err)
	}
	if twin, err := db.Credential(ctx, "compat-cc-twin"); err != nil || twin.ClientSecret != "compat-cc-secret" {
		t.Fatalf("compat-cc-twin after the rotation: %+v, %v", twin, err)
	}
	if sks, err := db.SigningKeys(ctx); err != nil || len(sks) != 1 || string(sks[0].Secret) != "compat-signing-secret-0123456789abcdef" {
		t.Fatalf("signing keys after the rotation: %v, %v", sks, err)
	}
	if rt, err := db.RefreshTokenByHash(ctx, sum("rt-4")); err != nil || rt.CreatedAt.Sub(fixtureEpoch) != 56*time.Minute {
		t.Fatalf("rotated refresh token: %+v, %v", rt, err)
	}
}
