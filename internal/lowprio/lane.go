package lowprio

import (
	"sync"
	"sync/atomic"
	"time"
)

// A Lane runs work that must keep up but not before requests, such as the
// claims and commits that keep tokens fresh, on a thread of lower CPU
// priority while that thread gets the CPU it needs, and at the process's
// priority as soon as it does not.
//
// A niced thread yields to the process's serving threads, which is what
// the work should do, and to every other process's threads too, which on
// a host busy elsewhere could hold it back for seconds. So a lane runs a
// job on its niced thread only while the rest of the host leaves the CPUs
// to this process: while other processes used less than half a CPU in
// all over the last quarter of a second or so (from /proc/stat and
// /proc/self/stat, read at most that often). And it watches its thread:
// a job that waits longer than MaxDelay before the thread takes it, or
// during which the thread waited longer than MaxDelay in all for a CPU
// (the kernel's run delay, from /proc/thread-self/schedstat), raises the
// lane. A raised lane runs its jobs on the caller's goroutine, at the
// process's priority, for Hold; then it tries the niced thread again.
// Nothing cuts a job short: what the niced thread has started it
// finishes, at its pace, so a host that turns busy during a job delays
// that job before the lane is raised.
//
// Where a thread's priority or its run delay cannot be had (elsewhere
// than Linux, or without /proc/thread-self/schedstat), and on a nil
// Lane, Run calls its job directly.
type Lane struct {
	// MaxDelay is the longest a job may wait for the niced thread, or the
	// niced thread for a CPU during a job, before the lane is raised.
	MaxDelay time.Duration
	// Hold is how long a raised lane runs its jobs at the process's
	// priority.
	Hold time.Duration
	// BusyElsewhere, if set, replaces the lane's look at the host: it
	// reports whether other processes use the CPUs the niced thread would
	// need. For tests.
	BusyElsewhere func() bool

	once   sync.Once
	worker *laneWorker // nil: the lane runs every job directly

	mu     sync.Mutex
	closed bool // guarded by mu

	raisedUntil atomic.Int64 // Unix nanoseconds
	raises      atomic.Int64
	niced       atomic.Int64
}

// Default settings of a Lane: a job waits at most 20 ms for its niced
// thread (or that thread for a CPU) before the lane is raised for 30 s.
const (
	DefaultMaxDelay = 20 * time.Millisecond
	DefaultHold     = 30 * time.Second
)

// totals counts what every lane of the process did (Totals).
var totals struct{ niced, direct, raises atomic.Int64 }

// Totals is what every Lane of this process has done: jobs run on niced
// threads, jobs run directly at the process's priority (raised, closed,
// the host busy elsewhere, or no niced thread here), and raises.
func Totals() (niced, direct, raises int64) {
	return totals.niced.Load(), totals.direct.Load(), totals.raises.Load()
}

// laneJob is one call of Run handed to the niced thread.
type laneJob struct {
	f     func()
	taken atomic.Bool // by the niced thread or, once MaxDelay passed, the caller
	done  chan struct{}
}

// laneWorker is a lane's niced thread: a goroutine locked to it, taking
// jobs until stop is closed.
type laneWorker struct {
	jobs chan *laneJob
	stop chan struct{}
	done chan struct{}
}

// Run calls f, on the lane's niced thread unless the lane is raised, and
// returns once f has returned. Calls of Run may overlap; a lane's thread
// runs one job at a time, so overlapping calls wait for each other (a
// job that waited MaxDelay runs on its caller's goroutine and raises the
// lane).
func (l *Lane) Run(f func()) {
	if l == nil {
		f()
		return
	}
	l.once.Do(l.start)
	if l.worker == nil || l.Raised() || l.isClosed() || l.busyElsewhere() {
		l.direct(f)
		return
	}
	j := &laneJob{f: f, done: make(chan struct{})}
	select {
	case l.worker.jobs <- j:
	default: // the thread's queue is full: it does not keep up
		l.raise()
		l.direct(f)
		return
	}
	t := time.NewTimer(l.maxDelay())
	select {
	case <-j.done:
		t.Stop()
		return
	case <-t.C:
	}
	if j.taken.CompareAndSwap(false, true) { // the niced thread has not started it
		l.raise()
		l.direct(f)
		return
	}
	<-j.done
}

// Raised reports whether the lane runs its jobs at the process's priority
// now, because its niced thread did not keep up.
func (l *Lane) Raised() bool { return time.Now().UnixNano() < l.raisedUntil.Load() }

// Raises is how many times the lane has been raised; Niced is how many
// jobs its niced thread has run.
func (l *Lane) Raises() int64 { return l.raises.Load() }

// Niced is how many jobs the lane's niced thread has run.
func (l *Lane) Niced() int64 { return l.niced.Load() }

// Close ends the lane's niced thread once its current job is done; later
// calls of Run call their job directly, and jobs still queued run on
// their callers' goroutines.
func (l *Lane) Close() {
	if l == nil {
		return
	}
	l.once.Do(l.start) // a lane never used starts and ends its thread here
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	if l.worker != nil {
		close(l.worker.stop)
		<-l.worker.done
	}
}

func (l *Lane) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

func (l *Lane) maxDelay() time.Duration {
	if l.MaxDelay > 0 {
		return l.MaxDelay
	}
	return DefaultMaxDelay
}

func (l *Lane) hold() time.Duration {
	if l.Hold > 0 {
		return l.Hold
	}
	return DefaultHold
}

func (l *Lane) busyElsewhere() bool {
	if l.BusyElsewhere != nil {
		return l.BusyElsewhere()
	}
	return hostBusyElsewhere()
}

// direct runs f on the caller's goroutine.
func (l *Lane) direct(f func()) {
	totals.direct.Add(1)
	f()
}

func (l *Lane) raise() {
	totals.raises.Add(1)
	l.raises.Add(1)
	l.raisedUntil.Store(time.Now().Add(l.hold()).UnixNano())
}

// start starts the lane's niced thread, if this platform has one.
func (l *Lane) start() {
	w := &laneWorker{jobs: make(chan *laneJob, 4), stop: make(chan struct{}), done: make(chan struct{})}
	if startWorker(w, l.work) {
		l.worker = w
	}
}

// work runs j on the niced thread, unless its caller took it back; runDelay
// reads the thread's total run delay.
func (l *Lane) work(j *laneJob, runDelay func() (time.Duration, bool)) {
	if !j.taken.CompareAndSwap(false, true) {
		return // its caller ran it
	}
	before, ok := runDelay()
	j.f()
	l.niced.Add(1)
	totals.niced.Add(1)
	if after, ok2 := runDelay(); !ok || !ok2 || after-before > l.maxDelay() {
		l.raise()
	}
	close(j.done)
}
