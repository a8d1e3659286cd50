package sqlstore_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// A release fixture is a database written by a released tokenkeeper, kept
// as SQL text in testdata/release-<dialect>.sql: the names of the
// migrations that built its schema, the schema_migrations table, then an
// INSERT for every row.
// TestOpenReleaseDatabase builds the database again from it and opens it
// with this tokenkeeper. To write the fixture of a release, run at that
// release (copying this file and dialects_test.go there if need be):
//
//	TOKENKEEPER_RELEASE=v1.2.3 TOKENKEEPER_WRITE_RELEASE_FIXTURE=$PWD/testdata \
//		go test -run TestWriteReleaseFixture
//
// with TOKENKEEPER_TEST_DATABASE_URL set.

// fixtureKey is the master key of the fixtures (a test value, sealing test
// values).
var fixtureKey, _ = hex.DecodeString("6b3a0f7c1d2e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5061728394a5b6c7d8")

// fixtureEpoch is the clock of the store while the fixture is written.
var fixtureEpoch = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)

// schemaMigrations creates the table in which the dialects record the
// migrations they applied; it is no migration itself.
var schemaMigrations = map[string]string{
	"sqlite":   `CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL) STRICT;`,
	"postgres": `CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL);`,
}

// fixtureTables are the tables of the schema, in an order that loads.
var fixtureTables = []string{"schema_migrations", "data_keys", "credentials", "events", "api_keys",
	"users", "refresh_tokens", "revocations", "service_clients", "signing_keys", "audit"}

func sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// fill writes a row in every table through the store's API, with the
// store's clock at fixtureEpoch plus *elapsed.
func fill(t testing.TB, db store, elapsed *time.Duration) {
	ctx := context.Background()
	at := func(d time.Duration) time.Time { *elapsed = d; return fixtureEpoch.Add(d) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	rc := &tokenkeeper.Credential{Name: "compat-refresh", TokenURL: "https://provider.example/token",
		GrantType: tokenkeeper.GrantRefreshToken, ClientID: "client-1", ClientSecret: "compat-client-secret",
		RefreshToken: "compat-refresh-token-1", Scopes: []string{"read", "write"}, AuthStyle: tokenkeeper.AuthStyleHeader,
		Params: map[string]string{"audience": "api"}, RefreshLead: 2 * time.Minute, NextRefreshAt: fixtureEpoch.Add(50 * time.Minute),
		Token: &tokenkeeper.Token{AccessToken: "compat-access-token-1", TokenType: "Bearer", ExpiresAt: fixtureEpoch.Add(time.Hour)}}
	must(db.CreateCredential(ctx, rc))
	cc := &tokenkeeper.Credential{Name: "compat-cc", TokenURL: "https://provider.example/token",
		GrantType: tokenkeeper.GrantClientCredentials, ClientID: "client-2", ClientSecret: "compat-cc-secret",
		AuthStyle: tokenkeeper.AuthStyleBody, Status: tokenkeeper.StatusError, FailureCount: 2,
		LastError: "provider said no", LastErrorCode: "temporarily_unavailable"}
	must(db.CreateCredential(ctx, cc))
	at(time.Minute)
	_, err := db.RotateKey(ctx)
	must(err)
	claimed, err := db.ClaimCredential(ctx, rc.ID, "old", at(2*time.Minute), time.Minute)
	must(err)
	_, err = db.CompleteRefresh(ctx, rc.ID, "old", claimed.Version, &tokenkeeper.RefreshResult{
		Token:        &tokenkeeper.Token{AccessToken: "compat-access-token-2", TokenType: "Bearer", ExpiresAt: fixtureEpoch.Add(62 * time.Minute)},
		RefreshToken: "compat-refresh-token-2", Status: tokenkeeper.StatusActive,
		LastRefreshAt: fixtureEpoch.Add(2 * time.Minute), NextRefreshAt: fixtureEpoch.Add(55 * time.Minute),
		Event: &tokenkeeper.Event{Kind: "refresh", Outcome: "ok", Message: "refreshed", Latency: 150 * time.Millisecond, Actor: "refresher:old"}})
	must(err)
	_, err = db.ClaimCredential(ctx, cc.ID, "holder", at(3*time.Minute), time.Hour)
	must(err)
	must(db.AddEvent(ctx, &tokenkeeper.Event{CredentialName: "compat-cc", Kind: "updated", Outcome: "ok", Actor: "apikey:compat"}))
	for _, k := range []*tokenkeeper.APIKey{
		{Name: "compat-admin", Prefix: "tk_admin", Hash: sum("admin key"), Role: tokenkeeper.RoleAdmin},
		{Name: "compat-consumer", Prefix: "tk_cons", Hash: sum("consumer key"), Role: tokenkeeper.RoleConsumer, Credentials: []string{"compat-refresh"}},
	} {
		must(db.CreateAPIKey(ctx, k))
	}
	at(4 * time.Minute)
	must(db.RevokeAPIKey(ctx, "compat-admin"))
	u := &tokenkeeper.User{Username: "alice", Role: tokenkeeper.RoleAdmin, PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"}
	must(db.CreateUser(ctx, u))
	first := &tokenkeeper.RefreshToken{UserID: u.ID, Hash: sum("rt-1"), AuthTime: fixtureEpoch.Add(4 * time.Minute),
		ExpiresAt: fixtureEpoch.Add(64 * time.Minute), FamilyExpiresAt: fixtureEpoch.Add(24 * time.Hour)}
	must(db.CreateRefreshToken(ctx, first))
	must(db.RotateRefreshToken(ctx, first.ID, at(5*time.Minute), &tokenkeeper.RefreshToken{Hash: sum("rt-2"), ExpiresAt: fixtureEpoch.Add(65 * time.Minute)}))
	other := &tokenkeeper.RefreshToken{UserID: u.ID, Hash: sum("rt-3"), AuthTime: fixtureEpoch.Add(5 * time.Minute),
		ExpiresAt: fixtureEpoch.Add(65 * time.Minute), FamilyExpiresAt: fixtureEpoch.Add(24 * time.Hour)}
	must(db.CreateRefreshToken(ctx, other))
	must(db.RevokeFamily(ctx, other.FamilyID, at(6*time.Minute), fixtureEpoch.Add(21*time.Minute)))
	must(db.CreateServiceClient(ctx, &tokenkeeper.ServiceClient{ClientID: "compat-svc", SecretHash: sum("svc secret"), Credentials: []string{"compat-cc"}}))
	must(db.AddSigningKey(ctx, &tokenkeeper.SigningKey{ID: "compat-key-1", Algorithm: "HS256", Secret: []byte("compat-signing-secret-0123456789abcdef")}))
	must(db.AddAudit(ctx, &tokenkeeper.AuditRecord{Actor: "user:alice", Action: "credential.create", Target: "compat-refresh",
		Outcome: "ok", RemoteAddr: "127.0.0.1", Detail: "created"}))
}

// dump returns the fixture of a database: the migrations applied, then an
// INSERT per row of every table, in the dialect's literals.
func dump(t testing.TB, dialect string, raw *sql.DB) string {
	var b strings.Builder
	names, err := raw.Query(`SELECT name FROM schema_migrations ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var migrations []string
	for names.Next() {
		var n string
		if err := names.Scan(&n); err != nil {
			t.Fatal(err)
		}
		migrations = append(migrations, n)
	}
	names.Close()
	fmt.Fprintf(&b, "-- A %s database written by tokenkeeper %s on %s (see compat_fill_test.go).\n",
		dialect, os.Getenv("TOKENKEEPER_RELEASE"), time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "-- migrations: %s\n%s\n", strings.Join(migrations, " "), schemaMigrations[dialect])
	for _, table := range fixtureTables {
		rows, err := raw.Query(`SELECT * FROM ` + table + ` ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		types, _ := rows.ColumnTypes()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			lits := make([]string, len(vals))
			for i, v := range vals {
				if b, ok := v.([]byte); ok && strings.HasPrefix(types[i].DatabaseTypeName(), "JSON") {
					v = string(b)
				}
				lits[i] = literal(t, dialect, v)
			}
			fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES (%s);\n", table, strings.Join(cols, ", "), strings.Join(lits, ", "))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	if dialect == "postgres" { // rows loaded with their ids do not move the sequences
		for _, table := range []string{"events", "audit"} {
			fmt.Fprintf(&b, "SELECT setval(pg_get_serial_sequence('%s', 'id'), (SELECT MAX(id) FROM %[1]s));\n", table)
		}
	}
	return b.String()
}

// literal writes v as an SQL literal of the dialect.
func literal(t testing.TB, dialect string, v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return strconv.FormatInt(v, 10)
	case string:
		if strings.ContainsAny(v, "\n\r") {
			t.Fatalf("a fixture value holds a line break: %q", v)
		}
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	case []byte:
		if dialect == "sqlite" {
			return "X'" + hex.EncodeToString(v) + "'"
		}
		return `'\x` + hex.EncodeToString(v) + "'"
	case time.Time:
		return "'" + v.UTC().Format(time.RFC3339Nano) + "'"
	}
	t.Fatalf("no literal for %T", v)
	return ""
}

// TestWriteReleaseFixture writes the fixtures of this tokenkeeper into the
// directory TOKENKEEPER_WRITE_RELEASE_FIXTURE names; it is skipped without.
func TestWriteReleaseFixture(t *testing.T) {
	dir := os.Getenv("TOKENKEEPER_WRITE_RELEASE_FIXTURE")
	if dir == "" {
		t.Skip("TOKENKEEPER_WRITE_RELEASE_FIXTURE is not set: fixtures are written only on demand")
	}
	for _, d := range databases(t) {
		var elapsed time.Duration
		db := d.open(t, fixtureKey, 0, func() time.Time { return fixtureEpoch.Add(elapsed) })
		fill(t, db, &elapsed)
		db.Close()
		out := dump(t, d.dialect, d.raw(t))
		if err := os.WriteFile(filepath.Join(dir, "release-"+d.dialect+".sql"), []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
