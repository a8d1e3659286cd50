package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	"github.com/tokenkeeper/tokenkeeper/internal/storetest"
)

func testKey(t testing.TB) []byte {
	t.Helper()
	k, err := seal.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openTest(t testing.TB, path string, master []byte, now func() time.Time, opts ...Option) *DB {
	t.Helper()
	db, err := Open(context.Background(), path, master, opts...)
	if err != nil {
		t.Fatal(err)
	}
	db.Now = now
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

func newHarness(t testing.TB, now func() time.Time) *storetest.Harness {
	path := filepath.Join(t.TempDir(), "data", "tokenkeeper.db")
	master := testKey(t)
	db := openTest(t, path, master, now)
	return &storetest.Harness{
		Store: db,
		Exec: func(ctx context.Context, query string, args ...any) error {
			_, err := db.writer.ExecContext(ctx, query, args...)
			return err
		},
		QueryRow: func(ctx context.Context, query string, args ...any) storetest.Row {
			return db.reader.QueryRowContext(ctx, query, args...)
		},
		RawDump: func(t testing.TB) []byte {
			var all []byte
			for _, p := range []string{path, path + "-wal", path + "-journal"} {
				b, err := os.ReadFile(p)
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Fatal(err)
				}
				all = append(all, b...)
			}
			return all
		},
		OpenPeer: func(t testing.TB) tokenkeeper.Store {
			return openTest(t, path, master, now)
		},
		AddDataKey: db.AddDataKey,
	}
}

func TestStore(t *testing.T) {
	storetest.Run(t, newHarness)
}

func TestOpenCreatesDirAndMigratesOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "a", "b", "tk.db")
	applied, err := Migrate(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(applied, allMigrations(t)) {
		t.Fatalf("applied = %v", applied)
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("database directory: %v, %v", fi, err)
	}
	applied, err = Migrate(ctx, path)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate applied %v, %v", applied, err)
	}
	master := testKey(t)
	db := openTest(t, path, master, time.Now)
	if db.Path() != path {
		t.Errorf("Path = %q", db.Path())
	}
	if ok, err := Exists(path); !ok || err != nil {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
	if ok, err := Exists(path + ".nope"); ok || err != nil {
		t.Fatalf("Exists(missing) = %v, %v", ok, err)
	}
	if KeyFilePath(path) != path+".key" {
		t.Fatal(KeyFilePath(path))
	}
	var mode string
	if err := db.reader.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
}

func TestWrongMasterKey(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tk.db")
	db, err := Open(ctx, path, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(ctx, path, testKey(t))
	if !errors.Is(err, seal.ErrMasterKeyMismatch) {
		t.Fatalf("Open with another master key = %v", err)
	}
	if want := "master key does not match this database"; !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Fatalf("error %q does not say %q", err, want)
	}
	if _, err := Open(ctx, path, []byte("short")); err == nil {
		t.Fatal("Open with a short master key succeeded")
	}
}

func TestBadPaths(t *testing.T) {
	ctx := context.Background()
	for _, p := range []string{"", ":memory:", "file:x.db"} {
		_, err := Open(ctx, p, testKey(t))
		if tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("Open(%q) = %v, want EINVALID", p, err)
		}
	}
	// A directory where the file should be cannot be opened: unavailable.
	dir := t.TempDir()
	_, err := Open(ctx, dir, testKey(t))
	if tokenkeeper.ErrorCode(err) != tokenkeeper.EUNAVAILABLE {
		t.Fatalf("Open(directory) = %v, want EUNAVAILABLE", err)
	}
}

func TestOddPathCharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "we?ird #dir%20", "tk db?.sqlite")
	db := openTest(t, path, testKey(t), time.Now)
	if err := db.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the given path: %v", err)
	}
}

// TestIndexesUsed checks that the refresher's queries use the schedule
// index instead of scanning every credential.
func TestIndexesUsed(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "tk.db"), testKey(t), time.Now)
	for _, q := range []string{
		`SELECT id FROM credentials WHERE status IN ('active', 'error') AND next_refresh_at <= ?1
			AND (lease_owner = '' OR lease_expires_at <= ?1) ORDER BY next_refresh_at, id LIMIT 10`,
		`SELECT next_refresh_at FROM credentials WHERE status IN ('active', 'error') AND lease_owner = ''
			ORDER BY next_refresh_at LIMIT 1`,
		`SELECT next_refresh_at FROM credentials WHERE lease_owner <> '' AND status IN ('active', 'error')`,
	} {
		rows, err := db.reader.Query(`EXPLAIN QUERY PLAN `+q, "x")
		if err != nil {
			t.Fatal(err)
		}
		var plan string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan += detail + "\n"
		}
		rows.Close()
		if !bytes.Contains([]byte(plan), []byte("USING INDEX credentials_")) {
			t.Errorf("query does not use an index:\n%s\nplan:\n%s", q, plan)
		}
	}
}

// Environment of the claim helper process (see TestMain).
const (
	helperEnvDB    = "TOKENKEEPER_SQLITE_HELPER_DB"
	helperEnvKey   = "TOKENKEEPER_SQLITE_HELPER_KEY"
	helperEnvOwner = "TOKENKEEPER_SQLITE_HELPER_OWNER"
	helperEnvStart = "TOKENKEEPER_SQLITE_HELPER_START"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnvDB) != "" {
		os.Exit(claimHelper())
	}
	os.Exit(m.Run())
}

// claimEpoch is the "now" every claimer uses in TestClaimAcrossProcesses.
var claimEpoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// claimHelper runs in a child process: it opens the database, waits for
// the common start time, claims until nothing is due and prints the ids it
// claimed, one per line.
func claimHelper() int {
	ctx := context.Background()
	master, err := seal.ParseMasterKey(os.Getenv(helperEnvKey))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	db, err := Open(ctx, os.Getenv(helperEnvDB), master)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer db.Close()
	startNS, _ := strconv.ParseInt(os.Getenv(helperEnvStart), 10, 64)
	time.Sleep(time.Until(time.Unix(0, startNS)))
	owner := os.Getenv(helperEnvOwner)
	for range 1000 {
		got, err := db.ClaimDue(ctx, owner, claimEpoch, time.Hour, 2)
		if err != nil {
			fmt.Fprintln(os.Stderr, "claim:", err)
			return 1
		}
		if len(got) == 0 {
			return 0
		}
		for _, c := range got {
			fmt.Println(c.ID)
			// Contend for the write lock between claims too.
			if err := db.AddEvent(ctx, &tokenkeeper.Event{CredentialID: c.ID, Kind: "claimed", Actor: owner}); err != nil {
				fmt.Fprintln(os.Stderr, "event:", err)
				return 1
			}
		}
		time.Sleep(3 * time.Millisecond) // the refresh itself, between claims
	}
	fmt.Fprintln(os.Stderr, "still claiming after 1000 rounds")
	return 1
}

// TestClaimAcrossProcesses has several processes and this one claim due
// credentials from one SQLite file at once: each is claimed exactly once
// and no writer fails with SQLITE_BUSY. (SQLite's lock is not fair: under
// this tight loop one process often does most of the work while the others
// wait in the busy handler. Correctness, not balance, is what is checked.)
func TestClaimAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tk.db")
	master := testKey(t)
	db := openTest(t, path, master, time.Now)
	const due = 60
	for i := range due {
		c := &tokenkeeper.Credential{Name: fmt.Sprintf("c%03d", i), TokenURL: "https://p.example/t",
			GrantType: tokenkeeper.GrantClientCredentials, ClientID: "id", ClientSecret: "s",
			AuthStyle: tokenkeeper.AuthStyleHeader, NextRefreshAt: claimEpoch.Add(-time.Duration(i) * time.Second)}
		if err := db.CreateCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
	}

	startAt := time.Now().Add(700 * time.Millisecond)
	const procs = 3
	outs := make([]bytes.Buffer, procs)
	cmds := make([]*exec.Cmd, procs)
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(),
			helperEnvDB+"="+path,
			helperEnvKey+"="+seal.EncodeMasterKey(master),
			helperEnvOwner+"="+fmt.Sprintf("proc-%d", i),
			helperEnvStart+"="+strconv.FormatInt(startAt.UnixNano(), 10))
		cmd.Stdout = &outs[i]
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
		t.Cleanup(func() {
			if stderr.Len() > 0 {
				t.Logf("proc-%d stderr: %s", i, stderr.String())
			}
		})
	}

	claims := map[string][]string{}
	time.Sleep(time.Until(startAt))
	for range 1000 {
		got, err := db.ClaimDue(ctx, "parent", claimEpoch, time.Hour, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		for _, c := range got {
			claims[c.ID] = append(claims[c.ID], "parent")
			if err := db.AddEvent(ctx, &tokenkeeper.Event{CredentialID: c.ID, Kind: "claimed", Actor: "parent"}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(3 * time.Millisecond)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("proc-%d: %v", i, err)
		}
		for _, id := range strings.Fields(outs[i].String()) {
			claims[id] = append(claims[id], fmt.Sprintf("proc-%d", i))
		}
	}
	if len(claims) != due {
		t.Fatalf("%d credentials claimed, want %d", len(claims), due)
	}
	owners := map[string]int{}
	for id, by := range claims {
		if len(by) != 1 {
			t.Errorf("credential %s claimed %d times: %v", id, len(by), by)
		}
		owners[by[0]]++
	}
	t.Logf("claims per owner: %v", owners)
	all, err := db.Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range all {
		if c.Version != 2 || claims[c.ID][0] != c.LeaseOwner {
			t.Errorf("%s: version %d, lease %q, claimed by %v", c.Name, c.Version, c.LeaseOwner, claims[c.ID])
		}
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, newHarness)
}

// allMigrations lists every embedded migration, in the order they apply.
func allMigrations(t *testing.T) []string {
	t.Helper()
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil || len(names) < 2 || names[0] != "migrations/0001_init.sql" || names[1] != "migrations/0002_auth.sql" {
		t.Fatalf("embedded migrations: %v, %v", names, err)
	}
	for i, n := range names {
		names[i] = path.Base(n)
	}
	slices.Sort(names)
	return names
}
