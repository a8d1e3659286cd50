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

// brokerCount counts the brokers running in this process that asked for
// a setting, which holds while there are any.
type brokerCount struct {
	mu      sync.Mutex
	brokers int // guarded by mu
}

// acquire counts one broker more, calling first (under the count's lock)
// if it is the only one; release counts it out, once, calling last if it
// was the last.
func (c *brokerCount) acquire(first, last func()) (release func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.brokers++; c.brokers == 1 {
		first()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.brokers--; c.brokers == 0 {
				last()
			}
		})
	}
}

// gcTuning counts the brokers that asked for the floor (tuneGC), and
// gcTuned is the tuner while there are any (guarded by gcTuning.mu; nil:
// GOGC is Go's default).
var (
	gcTuning brokerCount
	gcTuned  *gcTuner
)

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
	return gcTuning.acquire(func() {
		t := &gcTuner{samples: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}, percent: 100}
		t.tune()
		t.arm()
		gcTuned = t
	}, func() {
		gcTuned.stop()
		gcTuned = nil
	})
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

// procTuning counts the brokers running in this process that raised
// GOMAXPROCS (tuneProcs).
var procTuning brokerCount

// tuneProcs runs the Go scheduler with one P (a thread running Go code)
// more than its default, which is the CPUs this process may use, while a
// broker runs in this process, and returns the func to call once it has
// stopped (once the last one has, the default is back).
//
// Measured on 2 CPUs: wrk against token reads with GOMAXPROCS=3 reached
// 0.92 to 1.00 of a bare handler's request rate where the default reached
// 0.86 to 0.91 (three runs of three rounds each), and in bench scale (200,000
// credentials refreshed 560 times a second, 1,000 reads a second) the read
// p99 under the refresh load fell from 4.1 to 2.0 ms. Our reading of the
// execution traces: a goroutine that enters a system call keeps its P until
// the call returns or the runtime's monitor hands the P over, which takes
// from 20 µs to 10 ms, and a broker makes many (socket reads and writes,
// and SQLite's file writes, locks and fsync on its writer); meanwhile the
// goroutines queued on that P wait, although a CPU is free. With one P
// more, the CPUs stay busy, and the kernel's scheduler, not the runtime's
// queue, shares them. An operator's own GOMAXPROCS (in the environment)
// wins: then it does nothing.
func tuneProcs() (release func()) {
	if _, ok := os.LookupEnv("GOMAXPROCS"); ok {
		return func() {}
	}
	return procTuning.acquire(func() { runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1) }, runtime.SetDefaultGOMAXPROCS)
}
