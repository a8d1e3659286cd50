// Package storetest is the conformance suite every tokenkeeper.Store
// implementation must pass. A backend's tests call Run with a function that
// opens a fresh, empty store and the raw database access the suite needs to
// check what is at rest:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, now func() time.Time) *storetest.Harness {
//			db := open(t)      // a fresh database, closed at t.Cleanup
//			db.Now = now
//			return &storetest.Harness{Store: db, Exec: ..., QueryRow: ..., RawDump: ..., ...}
//		})
//	}
//
// Subtests run in parallel, each on its own harness.
package storetest

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Row is a single result row of a raw query; *sql.Row and pgx.Row satisfy it.
type Row interface {
	Scan(dest ...any) error
}

// Harness is one fresh, empty store under test and raw access to its
// database. Raw SQL uses numbered placeholders ($1, $2, ...), which both
// SQLite and PostgreSQL accept.
type Harness struct {
	// Store is the store under test. Its clock must be the now function
	// given to the NewHarness func.
	Store tokenkeeper.Store
	// Exec runs a raw SQL statement on the store's database.
	Exec func(ctx context.Context, query string, args ...any) error
	// QueryRow runs a raw SQL query returning one row.
	QueryRow func(ctx context.Context, query string, args ...any) Row
	// RawDump returns every byte the database keeps at rest: the database
	// files (SQLite), or a text dump of every table (PostgreSQL).
	RawDump func(t testing.TB) []byte
	// OpenPeer opens another Store on the same database, as another process
	// or replica would, with the same master key and clock. The harness
	// closes it at cleanup.
	OpenPeer func(t testing.TB) tokenkeeper.Store
	// AddDataKey adds a new, active data key to Store without re-sealing
	// anything.
	AddDataKey func(ctx context.Context) error
}

// NewHarness opens a fresh, empty store whose clock is now.
type NewHarness func(t testing.TB, now func() time.Time) *Harness

// Clock is a settable clock for stores under test. It is safe for
// concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time // guarded by mu
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set sets the clock's time.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Add moves the clock by d and returns the new time.
func (c *Clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// env is what each subtest works with.
type env struct {
	*Harness
	t     *testing.T
	ctx   context.Context
	clock *Clock
	s     tokenkeeper.Store
}

// start is the suite's epoch: sub-second on purpose, to check precision.
var start = time.Date(2030, 5, 17, 10, 20, 30, 123456000, time.UTC)

// Run runs the conformance suite. newHarness is called once per subtest.
func Run(t *testing.T, newHarness NewHarness) {
	tests := []struct {
		name string
		fn   func(e *env)
	}{
		{"CreateAndRead", testCreateAndRead},
		{"CreateInvalid", testCreateInvalid},
		{"CreateDuplicateName", testCreateDuplicateName},
		{"Update", testUpdate},
		{"UpdateFencing", testUpdateFencing},
		{"UpdateReauthorizes", testUpdateReauthorizes},
		{"UpdateInvalid", testUpdateInvalid},
		{"Delete", testDelete},
		{"SecretsNotAtRest", testSecretsNotAtRest},
		{"CiphertextMoved", testCiphertextMoved},
		{"TamperedRowSkippedInList", testTamperedRowSkippedInList},
		{"SecretParamsSealed", testSecretParamsSealed},
		{"ClaimDue", testClaimDue},
		{"ClaimDueConcurrent", testClaimDueConcurrent},
		{"ClaimDueTwoStores", testClaimDueTwoStores},
		{"LeaseExpiry", testLeaseExpiry},
		{"ClaimCredential", testClaimCredential},
		{"CompleteRefresh", testCompleteRefresh},
		{"CompleteRefreshFailureKeepsToken", testCompleteRefreshFailure},
		{"CompleteRefreshFenced", testCompleteRefreshFenced},
		{"CompleteRefreshOvertakenByEdit", testCompleteRefreshOvertaken},
		{"CompleteRefreshes", testCompleteRefreshes},
		{"CompleteRefreshInvalid", testCompleteRefreshInvalid},
		{"CompleteRefreshKeepsDisabled", testCompleteRefreshKeepsDisabled},
		{"NextRefreshAt", testNextRefreshAt},
		{"Events", testEvents},
		{"PruneEvents", testPruneEvents},
		{"ImportCredentials", testImportCredentials},
		{"RefreshesDoNotEraseOperatorEvents", testRefreshesDoNotEraseOperatorEvents},
		{"APIKeys", testAPIKeys},
		{"APIKeyNameReuse", testAPIKeyNameReuse},
		{"RotateKey", testRotateKey},
		{"RotateKeyPeer", testRotateKeyPeer},
		{"OldKeyStillOpens", testOldKeyStillOpens},
		{"RotateMasterKey", testRotateMasterKey},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Ping", testPing},
		{"ProviderCreateAndRead", testProviderCreateAndRead},
		{"ProviderAPI", testProviderAPI},
		{"ProviderPreset", testProviderPreset},
		{"CredentialOfProvider", testCredentialOfProvider},
		{"InlineProviders", testInlineProviders},
		{"UpdateProvider", testUpdateProvider},
		{"ProviderSecretReactivates", testProviderSecretReactivates},
		{"DeleteProvider", testDeleteProvider},
		{"UpdateCredentialProviderFields", testUpdateCredentialProviderFields},
		{"FilterCredentials", testFilterCredentials},
		{"ProviderSecretSealedOnce", testProviderSecretSealedOnce},
		{"ReplaceGrantInPlace", testReplaceGrantInPlace},
		{"ProviderSecretParamsSealed", testProviderSecretParamsSealed},
		{"ConnectSessions", testConnectSessions},
		{"ConnectReconnect", testConnectReconnect},
		{"ConnectExtras", testConnectExtras},
		{"DeviceSessions", testDeviceSessions},
		{"ConsoleSummaries", testConsoleSummaries},
	}
	tests = append(tests, webhookTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock(start)
			h := newHarness(t, clock.Now)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			t.Cleanup(cancel)
			tt.fn(&env{Harness: h, t: t, ctx: ctx, clock: clock, s: h.Store})
		})
	}
}

// PostgresURL returns the PostgreSQL database the tests run against,
// TOKENKEEPER_TEST_DATABASE_URL, or skips the test without it: fails it
// instead when TOKENKEEPER_REQUIRE_POSTGRES is set, as CI does.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("TOKENKEEPER_TEST_DATABASE_URL")
	if u == "" {
		if os.Getenv("TOKENKEEPER_REQUIRE_POSTGRES") != "" {
			tb.Fatal("TOKENKEEPER_REQUIRE_POSTGRES is set but TOKENKEEPER_TEST_DATABASE_URL is not")
		}
		tb.Skip("TOKENKEEPER_TEST_DATABASE_URL is not set")
	}
	return u
}
