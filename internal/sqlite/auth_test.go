package sqlite

import (
	"bytes"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/storetest"
)

func TestAuthStore(t *testing.T) {
	storetest.RunAuth(t, newHarness)
}

// TestAuthIndexesUsed checks that the auth store's frequent and growing
// queries use an index instead of scanning their table.
func TestAuthIndexesUsed(t *testing.T) {
	db := openTest(t, t.TempDir()+"/tk.db", testKey(t), time.Now)
	for _, q := range []struct{ query, index string }{
		{`SELECT id FROM refresh_tokens WHERE hash = ?1`, "sqlite_autoindex_refresh_tokens"},
		{`UPDATE refresh_tokens SET revoked_at = ?1 WHERE family_id = ?1 AND revoked_at IS NULL`, "refresh_tokens_family"},
		{`SELECT DISTINCT family_id FROM refresh_tokens WHERE user_id = ?1`, "refresh_tokens_user"},
		{`SELECT id FROM refresh_tokens WHERE family_expires_at <= ?1 LIMIT 10`, "refresh_tokens_family_expires_at"},
		{`DELETE FROM revocations WHERE family_id IN (SELECT family_id FROM revocations WHERE expires_at <= ?1 LIMIT 10)`, "revocations_expires_at"},
		{`SELECT id FROM audit WHERE actor = ?1 ORDER BY id DESC LIMIT 10`, "audit_actor"},
		{`SELECT id FROM audit WHERE action = ?1 AND id < ?1 ORDER BY id DESC LIMIT 10`, "audit_action"},
		{`SELECT id FROM audit WHERE time < ?1`, "audit_time"},
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
		if !bytes.Contains([]byte(plan), []byte(q.index)) {
			t.Errorf("query does not use %s:\n%s\nplan:\n%s", q.index, q.query, plan)
		}
	}
}
