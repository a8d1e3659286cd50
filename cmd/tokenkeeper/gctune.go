package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// heapFloor is the smallest heap goal the broker's garbage collector works
// to: 64 MiB.
//
// With Go's default (GOGC=100) the collector runs whenever the heap has
// grown by as much as was live after the last cycle, and marks the live
// heap each time. A broker with a few thousand credentials holds 3 to 10
// MiB, so under token reads (net/http allocates about 1.3 KB a request)
// it collected several times a second and spent 5 to 7% of its CPU doing
// so: a bare handler, with almost nothing live, marks a tenth as much per
// cycle. With the goal at least heapFloor, a small broker collects about
// once per 60 MiB allocated; one whose live heap is 32 MiB or more (a
// large fleet) keeps GOGC=100, and its peak memory does not change.
const heapFloor = 64 << 20

// maxGCPercent bounds the GOGC the floor sets, for a heap nearly empty.
const maxGCPercent = 5000

// gcTuning counts the brokers running in this process that asked for the
// floor (tuneGC), and holds the tuner while there are any.
var gcTuning struct {
	mu      sync.Mutex
	brokers int      // guarded by mu
	tuner   *gcTuner // guarded by mu; nil: GOGC is Go's default
}

// tuneGC keeps the heap goal at least heapFloor while a broker runs in
// this process, and returns the func to call once it has stopped (once
// the last one has, GOGC is 100 again): after each collection it sets GOGC
// so that the next goal is heapFloor, or leaves GOGC at 100 once the live
// heap is half of it or more. Setting GOGC recomputes the goal at once; no
// collection is forced. An operator's own GOGC or GOMEMLIMIT (in the
// environment) wins: then it does nothing. (bench scale stops its brokers
// to seed the database: its seeding runs on Go's default.)
func tuneGC() (release func()) {
	if _, ok := os.LookupEnv("GOGC"); ok {
		return func() {}
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		return func() {}
	}
	gcTuning.mu.Lock()
	defer gcTuning.mu.Unlock()
	if gcTuning.brokers++; gcTuning.brokers == 1 {
		t := &gcTuner{samples: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}, percent: 100}
		t.tune()
		t.arm()
		gcTuning.tuner = t
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			gcTuning.mu.Lock()
			defer gcTuning.mu.Unlock()
			if gcTuning.brokers--; gcTuning.brokers == 0 {
				gcTuning.tuner.stop()
				gcTuning.tuner = nil
			}
		})
	}
}

// gcTuner adjusts GOGC after each collection until stopped.
type gcTuner struct {
	mu      sync.Mutex
	stopped bool // guarded by mu
	samples []metrics.Sample
	percent int // the GOGC last set; guarded by mu
}

// gcSentinel is an object no one references: its finalizer runs after the
// collection that found it unreachable, and arms a new one.
type gcSentinel struct {
	t *gcTuner
	_ [16]byte // not a tiny allocation: those may share a block and never be finalized
}

func (t *gcTuner) arm() {
	s := &gcSentinel{t: t}
	runtime.SetFinalizer(s, func(s *gcSentinel) {
		if s.t.tune() {
			s.t.arm()
		}
	})
}

// stop sets GOGC back to 100 and ends the tuning.
func (t *gcTuner) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.percent != 100 {
		debug.SetGCPercent(100)
	}
}

// tune sets GOGC for the live heap the last collection found; false once
// the tuner is stopped.
func (t *gcTuner) tune() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	metrics.Read(t.samples)
	if t.samples[0].Value.Kind() != metrics.KindUint64 {
		return true
	}
	p := gcPercentFor(t.samples[0].Value.Uint64())
	// Only a change of a tenth or more: each call takes the heap lock.
	if d := p - t.percent; d*10 >= t.percent || -d*10 >= t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
	return true
}

// gcPercentFor returns the GOGC that makes the heap goal (live times
// 1+GOGC/100) heapFloor, within 100 and maxGCPercent.
func gcPercentFor(live uint64) int {
	if live >= heapFloor/2 {
		return 100
	}
	if live == 0 {
		return maxGCPercent
	}
	return int(min(max((heapFloor-live)*100/live, 100), maxGCPercent))
}
