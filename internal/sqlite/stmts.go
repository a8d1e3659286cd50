package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"sync"
)

// stmtCache keeps the store's statements prepared, so that SQLite parses
// each once per connection rather than on every call: on the refresher's
// hot path (claims, commits, credential reads) parsing took 30% of the
// process's CPU at 330 refreshes a second (modernc.org/sqlite prepares
// every query it is given).
//
// A statement is prepared on the *sql.DB, which prepares it again on each
// of its connections as they use it. Inside a write transaction, which
// holds the writer's only connection, nothing can be prepared on the DB:
// a statement first seen there runs unprepared and is noted, and prepared
// once the transaction has ended; later transactions bind it to their
// connection (Tx.StmtContext), where it is already prepared.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt // guarded by mu: translated query -> statement
	// noted are the queries seen in a transaction and not prepared yet.
	noted map[string]bool // guarded by mu
}

// maxCachedStmts bounds the cache: the store's queries are a bounded set
// of constants, but a few are built with a variable number of rows.
const maxCachedStmts = 256

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}, noted: map[string]bool{}}
}

// cacheable reports whether query may be prepared: one statement (a
// prepared statement runs only the first of several).
func cacheable(query string) bool {
	return !strings.Contains(strings.TrimRight(query, "; \t\n"), ";")
}

// get returns query's prepared statement, preparing it now if not in a
// transaction (inTx false), or nil: not cacheable, the cache full, or to
// be prepared after the transaction.
func (c *stmtCache) get(ctx context.Context, query string, inTx bool) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	st, ok := c.m[query]
	full := len(c.m) >= maxCachedStmts
	if !ok && inTx && !full && cacheable(query) {
		c.noted[query] = true
	}
	c.mu.Unlock()
	if ok || inTx || full || !cacheable(query) {
		return st
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil // the caller runs it unprepared, and reports its error
	}
	return c.put(query, st)
}

// put keeps st for query, unless another was kept first, and returns the
// one kept.
func (c *stmtCache) put(query string, st *sql.Stmt) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[query]; ok {
		st.Close()
		return prev
	}
	if len(c.m) >= maxCachedStmts {
		st.Close()
		return nil
	}
	c.m[query] = st
	return st
}

// prepareNoted prepares the queries noted in transactions: called when
// none is running on this goroutine.
func (c *stmtCache) prepareNoted(ctx context.Context) {
	if c == nil {
		return
	}
	c.mu.Lock()
	var queries []string
	for q := range c.noted {
		queries = append(queries, q)
	}
	clear(c.noted)
	c.mu.Unlock()
	for _, q := range queries {
		if st, err := c.db.PrepareContext(ctx, q); err == nil {
			c.put(q, st)
		}
	}
}

// close closes every statement.
func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}
