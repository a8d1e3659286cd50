package postgres

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Vacuum vacuums a churned table once its dead rows pass the threshold,
// as the database's statistics count them, and leaves it alone after.
func TestVacuumReclaimsDeadRows(t *testing.T) {
	_, inSchema := freshSchema(t)
	db := openTest(t, testKey(t), time.Now, inSchema)
	ctx := context.Background()
	// 5,000 events recorded and deleted: 5,000 dead rows, over the
	// threshold of an events table with no live rows.
	if _, err := db.pool.Exec(ctx, `INSERT INTO events (credential_id, credential_name, time, kind, outcome, error_code, message, latency, actor)
		SELECT '', 'gone', now(), 'refresh', 'ok', '', '', 0, 'test' FROM generate_series(1, 5000)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(ctx, `DELETE FROM events`); err != nil {
		t.Fatal(err)
	}
	stat := func() (dead, vacuums int64) {
		t.Helper()
		err := db.pool.QueryRow(ctx, `SELECT n_dead_tup, vacuum_count FROM pg_stat_user_tables WHERE relid = to_regclass('events')`).Scan(&dead, &vacuums)
		if err != nil {
			t.Fatal(err)
		}
		return dead, vacuums
	}
	// The statistics reach the view within a second or so of the commit.
	deadline := time.Now().Add(30 * time.Second)
	var done []string
	for {
		var err error
		if done, err = db.Vacuum(ctx); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(done, "events") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events not vacuumed within 30s (vacuumed %v); dead rows by the statistics: %d", done, func() int64 { d, _ := stat(); return d }())
		}
		time.Sleep(200 * time.Millisecond)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		dead, vacuums := stat()
		if vacuums >= 1 && dead < vacuumMinDead {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Vacuum: %d dead rows, %d vacuums", dead, vacuums)
		}
	}
	// Nothing dead any more: the next call leaves events alone.
	done, err := db.Vacuum(ctx)
	if err != nil || slices.Contains(done, "events") {
		t.Fatalf("a second Vacuum: %v, %v; events has nothing to reclaim", done, err)
	}
}

// TestCredentialIndexesLeaveRoom: every index of credentials is filled to
// 70% (migrations 0013 and 0014), so that the entries of the row versions
// each refresh writes fit beside the old ones until they are deleted,
// rather than splitting the pages of an index loaded in key order. An
// index added to credentials without the setting fails here.
func TestCredentialIndexesLeaveRoom(t *testing.T) {
	schema, inSchema := freshSchema(t)
	db := openTest(t, testKey(t), time.Now, inSchema)
	rows, err := db.pool.Query(context.Background(), `SELECT i.relname, COALESCE(array_to_string(i.reloptions, ','), '')
		FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
		JOIN pg_namespace n ON n.oid = t.relnamespace
		WHERE n.nspname = $1 AND t.relname = 'credentials' ORDER BY 1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	type index struct{ name, options string }
	ixs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (index, error) {
		var ix index
		return ix, r.Scan(&ix.name, &ix.options)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ixs) < 10 {
		t.Fatalf("credentials has %d indexes: %v", len(ixs), ixs)
	}
	for _, ix := range ixs {
		if ix.options != "fillfactor=70" {
			t.Errorf("index %s: options %q, want fillfactor=70", ix.name, ix.options)
		}
	}
}
