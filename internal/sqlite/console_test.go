package sqlite

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConsoleIndexesUsed checks that the console's queries
// (sqlstore/console.go) read through the indexes of migration 0011, so
// that the overview and the lists stay fast with many credentials.
func TestConsoleIndexesUsed(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "tk.db"), testKey(t), time.Now)
	for _, q := range []struct{ query, index string }{
		{`SELECT c.name FROM credentials c JOIN providers p ON p.id = c.provider_id WHERE c.status = ?1
			ORDER BY c.updated_at DESC LIMIT 10`, "credentials_status_updated_at"},
		{`SELECT c.name FROM credentials c JOIN providers p ON p.id = c.provider_id
			WHERE c.expires_at IS NOT NULL AND c.access_token IS NOT NULL AND c.status <> 'disabled'
			ORDER BY c.expires_at, c.name LIMIT 10`, "credentials_expires_at"},
		{`SELECT c.name FROM credentials c JOIN providers p ON p.id = c.provider_id WHERE c.status = ?1 AND c.name > ?1
			ORDER BY c.name LIMIT 51`, "credentials_status_name"},
		{`SELECT COUNT(*), SUM(CASE WHEN outcome = 'ok' THEN 0 ELSE 1 END) FROM events
			WHERE kind = 'refresh' AND time >= ?1`, "events_kind_time"},
		{`SELECT MAX(updated_at) FROM credentials WHERE ?1 = ?1`, "credentials_updated_at"},
	} {
		rows, err := db.reader.Query(`EXPLAIN QUERY PLAN `+q.query, "x")
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
		if !strings.Contains(plan, q.index) {
			t.Errorf("query does not use %s:\n%s\nplan:\n%s", q.index, q.query, plan)
		}
	}
}
