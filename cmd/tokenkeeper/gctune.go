package main

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
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
// once per 60 MiB allocated. Under a steady load the goal is also what the
// broker allocates in gcSpacing, within maxHeadroom (see gcPercentFor).
const heapFloor = 64 << 20

// maxGCPercent bounds the GOGC the tuner sets, for a heap nearly empty.
const maxGCPercent = 5000

// gcSpacing is how long the tuner lets the heap grow between collections
// at the rate the broker allocates, within maxHeadroom: 10 s.
//
// A collection is not free for the token reads that run beside it: its
// marking takes one of the broker's Ps and a CPU, and the goroutines that
// allocate meanwhile (a read's too) help it. In bench scale at 200,000
// credentials (about 400 refreshes a second, 1,000 reads a second, 20 MiB
// live) the broker allocated about 22 MB/s and, with the goal at heapFloor,
// collected every 2 s; a fifth of the reads slower than 3 ms came during
// the 0.7% of the time a collection ran. With a collection every 9 s
// instead (GOGC=1000 in the environment), the read p99 under the refresh
// load was 1.13 and 1.46 ms, against 1.68 to 3.97 ms in nine runs at the
// floor (most with a diagnostic probe on).
const gcSpacing = 10 * time.Second

// maxHeadroom bounds the heap the tuner lets grow beyond the live heap for
// gcSpacing: 256 MiB, or a quarter of the memory limit of the broker's
// cgroup where that is less.
const maxHeadroom = 256 << 20

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

// tuneGC keeps the heap goal at least heapFloor, and collections about
// gcSpacing apart under load, while a broker runs in this process, and
// returns the func to call once it has stopped (once the last one has,
// GOGC is 100 again): after each collection it sets GOGC for the live
// heap and the rate of allocation since the collection before
// (gcPercentFor). Setting GOGC recomputes the goal at once; no
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
		t := &gcTuner{samples: []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/allocs:bytes"}},
			percent: 100, headroom: headroomLimit(cgroupMemoryLimit())}
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
	// headroom is the most the heap may grow beyond the live heap for
	// gcSpacing (maxHeadroom, or less under a cgroup's memory limit).
	headroom uint64
	// The heap allocated in all (/gc/heap/allocs:bytes) at the last tune,
	// and when; guarded by mu.
	allocs   uint64
	allocsAt time.Time
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

// tune sets GOGC for the live heap the last collection found and the rate
// at which the heap was allocated since the tune before; false once the
// tuner is stopped.
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
	var rate float64 // bytes a second; 0 the first time
	now := time.Now()
	if t.samples[1].Value.Kind() == metrics.KindUint64 {
		allocs := t.samples[1].Value.Uint64()
		// Over a second at least: a collection forced soon after the last
		// (runtime.GC, a GOGC just set) says little of the rate.
		if el := max(now.Sub(t.allocsAt).Seconds(), 1); !t.allocsAt.IsZero() && allocs >= t.allocs {
			rate = float64(allocs-t.allocs) / el
		}
		t.allocs, t.allocsAt = allocs, now
	}
	p := gcPercentFor(t.samples[0].Value.Uint64(), rate, t.headroom)
	// Only a change of a tenth or more: each call takes the heap lock.
	if d := p - t.percent; d*10 >= t.percent || -d*10 >= t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
	return true
}

// gcPercentFor returns the GOGC for a live heap allocated at rate bytes a
// second: the heap goal (live times 1+GOGC/100) is the largest of
//   - Go's default, twice the live heap;
//   - heapFloor;
//   - the live heap and what is allocated in gcSpacing at rate, but at
//     most headroom beyond the live heap;
//
// with GOGC within 100 and maxGCPercent.
func gcPercentFor(live uint64, rate float64, headroom uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	grow := uint64(0)
	if heapFloor > live {
		grow = heapFloor - live
	}
	grow = max(grow, uint64(min(rate*gcSpacing.Seconds(), float64(headroom))))
	return int(min(max(grow*100/live, 100), maxGCPercent))
}

// headroomLimit is maxHeadroom, or a quarter of limit (a memory limit in
// bytes; 0: none) where that is less.
func headroomLimit(limit uint64) uint64 {
	if limit > 0 && limit/4 < maxHeadroom {
		return limit / 4
	}
	return maxHeadroom
}

// cgroupMemoryLimit reads the memory limit of this process's cgroup
// (cgroup v2, memory.max); 0 where there is none or it cannot be read.
func cgroupMemoryLimit() uint64 {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	path, ok := cgroupV2Path(string(b))
	if !ok {
		return 0
	}
	m, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", path, "memory.max"))
	if err != nil {
		return 0
	}
	return parseMemoryMax(string(m))
}

// cgroupV2Path finds the cgroup v2 entry ("0::/path") of /proc/self/cgroup.
func cgroupV2Path(procCgroup string) (string, bool) {
	for line := range strings.SplitSeq(procCgroup, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok && strings.HasPrefix(p, "/") && !strings.Contains(p, "..") {
			return p, true
		}
	}
	return "", false
}

// parseMemoryMax reads a memory.max file: bytes, or "max" (no limit: 0).
func parseMemoryMax(s string) uint64 {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0
	}
	return n
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
