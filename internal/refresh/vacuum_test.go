package refresh_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
)

// vacuumingStore is a store that is a refresh.Vacuumer, counting its calls;
// every other call fails once.
type vacuumingStore struct {
	tokenkeeper.Store
	calls atomic.Int32
}

func (s *vacuumingStore) Vacuum(ctx context.Context) ([]string, error) {
	if s.calls.Add(1) == 2 {
		return nil, errors.New("database unavailable")
	}
	return []string{"credentials"}, nil
}

// Run asks a Vacuumer store to vacuum every VacuumInterval, and keeps
// asking after a failure; with a negative interval it never asks.
func TestRunAsksTheStoreToVacuum(t *testing.T) {
	w := newWorld(t, false, nil)
	st := &vacuumingStore{Store: w.open("a", nil)}
	w.replica("a", st, refresh.Config{VacuumInterval: 20 * time.Millisecond}, false)
	eventually(t, 10*time.Second, "three calls to Vacuum, one of them failed", func() bool { return st.calls.Load() >= 3 })

	off := &vacuumingStore{Store: w.open("b", nil)}
	w.replica("b", off, refresh.Config{VacuumInterval: -1}, false)
	time.Sleep(200 * time.Millisecond)
	if n := off.calls.Load(); n != 0 {
		t.Fatalf("Vacuum called %d times with a negative VacuumInterval", n)
	}
}
