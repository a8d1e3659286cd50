package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
)

// The tables that refreshes churn: each refresh updates its credential
// twice (the claim and the commit) and records an event, and retention
// deletes as many events as are recorded. PostgreSQL keeps the old row
// versions, and their index entries, until a vacuum marks their space
// free; until then every new version takes new space. Autovacuum's
// defaults wait for a fifth of a table to be dead, and a database may run
// with autovacuum off or throttled: at a million credentials these tables
// then grew by about a gigabyte an hour. Vacuum keeps them level.
var vacuumTables = []string{"credentials", "events", "audit"}

// Thresholds of Vacuum: a table is vacuumed once its dead row versions
// reach vacuumMinDead plus vacuumDeadFraction of its live rows, and
// analyzed with it once the rows changed since its last analysis reach
// vacuumAnalyzeFraction of them (the planner's statistics of a table
// seeded in bulk are otherwise never taken where autovacuum is off).
const (
	vacuumMinDead         = 2000
	vacuumDeadFraction    = 0.02
	vacuumAnalyzeFraction = 0.10
)

// VacuumThreshold is the number of dead row versions at which Vacuum
// vacuums a table of live rows. Between two vacuums a churned table takes
// about this many rows' space beyond its live rows: the dead ones, whose
// space the next vacuum frees for the rows written after it.
func VacuumThreshold(live int64) int64 {
	return vacuumMinDead + int64(vacuumDeadFraction*float64(live))
}

// Vacuum vacuums the tables that refreshes churn (vacuumTables) whose dead
// row versions, by the database's statistics, passed the thresholds above,
// and returns their names (refresh.Vacuumer). A plain VACUUM blocks no
// reads or writes; SKIP_LOCKED leaves a table that another replica or
// autovacuum is vacuuming to it. Tables are found through the connection's
// search_path, as every other statement finds them.
func (db *DB) Vacuum(ctx context.Context) ([]string, error) {
	type stat struct {
		name                     string
		live, dead, sinceAnalyze int64
		analyzed                 bool
	}
	rows, err := db.pool.Query(ctx, `SELECT t.name, s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze,
			s.last_analyze IS NOT NULL OR s.last_autoanalyze IS NOT NULL
		FROM unnest($1::text[]) AS t(name)
		JOIN pg_stat_user_tables s ON s.relid = to_regclass(t.name)`, vacuumTables)
	if err != nil {
		return nil, sqlstore.Err(dialect, "read table statistics", err)
	}
	stats, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stat, error) {
		var s stat
		err := r.Scan(&s.name, &s.live, &s.dead, &s.sinceAnalyze, &s.analyzed)
		return s, err
	})
	if err != nil {
		return nil, sqlstore.Err(dialect, "read table statistics", err)
	}
	var done []string
	for _, s := range stats {
		vacuum := s.dead >= VacuumThreshold(s.live)
		analyze := s.sinceAnalyze > 0 && (!s.analyzed || float64(s.sinceAnalyze) >= vacuumAnalyzeFraction*float64(s.live))
		if !vacuum && !analyze {
			continue
		}
		opts := "SKIP_LOCKED"
		if analyze {
			opts += ", ANALYZE"
		}
		if _, err := db.pool.Exec(ctx, "VACUUM ("+opts+") "+pgx.Identifier{s.name}.Sanitize()); err != nil {
			return done, sqlstore.Err(dialect, fmt.Sprintf("vacuum %s", s.name), err)
		}
		done = append(done, s.name)
	}
	return done, nil
}
