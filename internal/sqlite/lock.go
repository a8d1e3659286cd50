package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
)

// ErrLocked reports that another broker process serves the same SQLite file.
var ErrLocked = errors.New("database is in use by another tokenkeeper process")

// Lock takes an exclusive advisory lock on path + ".lock", so that one broker
// process at a time serves a SQLite database (several replicas belong on
// PostgreSQL). The lock is released by the returned function, or by the
// kernel when the process dies, however it dies. The error wraps ErrLocked
// and names the holder's pid when another process holds it.
func Lock(path string) (release func() error, err error) {
	if err := EnsureDir(path); err != nil {
		return nil, err
	}
	lockPath := path + ".lock"
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(lockPath)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(holder))
			if _, perr := strconv.Atoi(pid); perr != nil {
				pid = "unknown"
			}
			return nil, fmt.Errorf("%w (pid %s holds %s); run several replicas on PostgreSQL instead", ErrLocked, pid, lockPath)
		}
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() error {
		_ = f.Truncate(0)
		return f.Close() // closing releases the flock
	}, nil
}

// ReleaseLeases clears every refresh lease. Only safe while holding Lock:
// then no other process can be refreshing, and leases left in the file
// belong to a process that died (a SIGKILL between claim and commit). The
// credentials become claimable at once instead of when the leases expire.
// Returns how many leases were released.
func (db *DB) ReleaseLeases(ctx context.Context) (int, error) {
	var n int64
	err := db.conn().Tx(ctx, func(q sqlstore.Querier) (err error) {
		n, err = q.Exec(ctx, `UPDATE credentials SET lease_owner = '', lease_expires_at = NULL,
			version = version + 1 WHERE lease_owner <> ''`)
		return err
	})
	return int(n), sqlstore.Err(dialect, "release leases", err)
}
