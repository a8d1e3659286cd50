package lowprio

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokenkeeper/tokenkeeper/internal/lowprio/lowpriotest"
)

// threadNice is the calling thread's nice value, from the kernel's
// /proc/thread-self/stat (field 19), which the runtime does not cache.
func threadNice(t *testing.T) int {
	b, err := os.ReadFile("/proc/thread-self/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // the name may hold spaces
	n, err := strconv.Atoi(fields[16])                            // field 3 is fields[0]
	if err != nil {
		t.Fatalf("nice in %q: %v", s, err)
	}
	return n
}

// TestGoLowersItsThreadOnly: f runs on a thread whose nice value is
// Nice more than the process's; threads running other goroutines, also
// after f has returned, keep theirs.
func TestGoLowersItsThreadOnly(t *testing.T) {
	runtime.LockOSThread()
	base := threadNice(t)
	runtime.UnlockOSThread()

	// Each goroutine's channel is closed once it has returned.
	got := make(chan int, 8)
	var dones []<-chan struct{}
	for range 8 {
		dones = append(dones, Go(func() { got <- threadNice(t) }))
	}
	for _, d := range dones {
		<-d
	}
	if len(got) != 8 {
		t.Fatalf("%d of 8 goroutines had run when their channels were closed", len(got))
	}
	close(got)
	want := min(base+Nice, 19)
	for n := range got {
		if n != want {
			t.Errorf("a background goroutine's thread has nice %d, want %d (process: %d)", n, want, base)
		}
	}
	// The threads that ran them are gone: every thread now running a
	// goroutine has the process's priority.
	var wg sync.WaitGroup
	var mu sync.Mutex
	others := map[int]bool{}
	for range 32 {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			n := threadNice(t)
			mu.Lock()
			others[n] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(others) != 1 || !others[base] {
		t.Errorf("other goroutines' threads have nice values %v, want only %d", others, base)
	}
}

// Lowered tells a goroutine started by Go from one that was not, even
// locked to a thread of its own.
func TestLowered(t *testing.T) {
	var in bool
	<-Go(func() { in = Lowered() })
	out := make(chan bool)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		out <- Lowered()
	}()
	if !in || <-out || Lowered() {
		t.Fatalf("Lowered: %v in Go, want true; false elsewhere", in)
	}
}

// TestLaneRunsNicedWhileItKeepsUp: on a machine that is not starving
// it, a lane runs its jobs on one niced thread, one at a time, and does
// not raise itself.
func TestLaneRunsNicedWhileItKeepsUp(t *testing.T) {
	l := &Lane{MaxDelay: 10 * time.Second, BusyElsewhere: idleHost}
	defer l.Close()
	tids := map[int]bool{}
	for range 5 {
		var lowered bool
		var tid int
		l.Run(func() { lowered, tid = Lowered(), unix.Gettid() })
		if !lowered {
			t.Fatal("a job of an idle lane ran at the process's priority")
		}
		tids[tid] = true
	}
	if len(tids) != 1 || l.Niced() != 5 || l.Raises() != 0 || l.Raised() {
		t.Errorf("threads %v, %d niced, %d raises, raised %v; want one thread, 5, 0, false", tids, l.Niced(), l.Raises(), l.Raised())
	}
}

// TestLaneRaisedWhenItsThreadStarves: with more busy threads of the
// process's priority than CPUs, in other processes, the niced thread
// does not keep up: it waits for a CPU during its job longer than
// MaxDelay, or does not start the job that long (then its caller runs
// it). Either way the lane is raised, and its next jobs run at the
// process's priority.
func TestLaneRaisedWhenItsThreadStarves(t *testing.T) {
	l := &Lane{MaxDelay: 100 * time.Millisecond, Hold: time.Minute, BusyElsewhere: idleHost}
	defer l.Close()
	l.Run(func() {}) // the niced thread waits for jobs
	lowpriotest.Spin(t, 2*runtime.NumCPU()+2)
	// 20 ms of CPU, which takes the niced thread far longer.
	l.Run(func() { busy(20 * time.Millisecond) })
	if l.Raises() != 1 || !l.Raised() {
		t.Fatalf("%d raises, raised %v: want 1, true", l.Raises(), l.Raised())
	}
	var next bool
	l.Run(func() { next = Lowered() })
	if next {
		t.Error("the raised lane's next job ran niced")
	}
}

// TestLaneRaisedByRunDelay: a job during which the niced thread waited
// for a CPU longer than MaxDelay raises the lane; one that waited less
// does not.
func TestLaneRaisedByRunDelay(t *testing.T) {
	l := &Lane{MaxDelay: 20 * time.Millisecond, BusyElsewhere: idleHost}
	delays := []time.Duration{time.Second, time.Second + 20*time.Millisecond, 2 * time.Second, 2*time.Second + 21*time.Millisecond}
	runDelay := func() (time.Duration, bool) {
		d := delays[0]
		delays = delays[1:]
		return d, true
	}
	for i, want := range []int64{0, 1} {
		j := &laneJob{f: func() {}, done: make(chan struct{})}
		l.work(j, runDelay)
		if l.Raises() != want {
			t.Errorf("job %d: %d raises, want %d", i, l.Raises(), want)
		}
	}
	// A thread whose run delay cannot be read is not trusted.
	j := &laneJob{f: func() {}, done: make(chan struct{})}
	l.work(j, func() (time.Duration, bool) { return 0, false })
	if l.Raises() != 2 {
		t.Errorf("unreadable run delay: %d raises, want 2", l.Raises())
	}
}

// TestLaneTakesBackAJobItsThreadDoesNotStart: a job that waits for the
// niced thread longer than MaxDelay runs on its caller's goroutine and
// raises the lane for Hold; after Hold, jobs go to the niced thread again.
func TestLaneTakesBackAJobItsThreadDoesNotStart(t *testing.T) {
	l := &Lane{MaxDelay: 200 * time.Millisecond, Hold: 300 * time.Millisecond, BusyElsewhere: idleHost}
	defer l.Close()
	release := make(chan struct{})
	first := make(chan struct{})
	go l.Run(func() { close(first); <-release }) // blocked, not runnable: no run delay
	<-first
	start := time.Now()
	var lowered bool
	l.Run(func() { lowered = Lowered() })
	if waited := time.Since(start); lowered || waited < l.MaxDelay || !l.Raised() || l.Raises() != 1 {
		t.Fatalf("job behind a busy thread: lowered %v after %v, raised %v, %d raises; want false after %v, true, 1",
			lowered, waited, l.Raised(), l.Raises(), l.MaxDelay)
	}
	close(release)
	for l.Raised() {
		time.Sleep(10 * time.Millisecond)
	}
	l.Run(func() { lowered = Lowered() })
	if !lowered {
		t.Error("after Hold, a job ran at the process's priority")
	}
}

// TestLaneClose: Close ends the thread; later jobs run directly. Closing
// twice, or a lane never used, is fine.
func TestLaneClose(t *testing.T) {
	l := &Lane{MaxDelay: 10 * time.Second, BusyElsewhere: idleHost}
	var lowered bool
	l.Run(func() { lowered = Lowered() })
	if !lowered {
		t.Fatal("the job before Close ran at the process's priority")
	}
	l.Close()
	l.Close()
	l.Run(func() { lowered = Lowered() })
	if lowered || l.Niced() != 1 {
		t.Errorf("after Close: lowered %v, %d niced; want false, 1", lowered, l.Niced())
	}
	(&Lane{}).Close()
}

// busy spins on the calling thread for d of its own CPU time.
func busy(d time.Duration) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	end := ts.Nano() + d.Nanoseconds()
	for ts.Nano() < end {
		_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	}
}

// idleHost is a Lane's BusyElsewhere for a test that needs its niced
// thread whatever else the machine runs.
func idleHost() bool { return false }

// TestLaneAtTheProcessPriorityWhileTheHostIsBusy: while other processes
// keep the CPUs busy, a lane runs its jobs directly, at the process's
// priority, before any of them is held back.
func TestLaneAtTheProcessPriorityWhileTheHostIsBusy(t *testing.T) {
	busy := true
	l := &Lane{MaxDelay: 10 * time.Second, BusyElsewhere: func() bool { return busy }}
	defer l.Close()
	var lowered bool
	l.Run(func() { lowered = Lowered() })
	if lowered || l.Niced() != 0 || l.Raises() != 0 {
		t.Fatalf("on a busy host: lowered %v, %d niced, %d raises; want false, 0, 0", lowered, l.Niced(), l.Raises())
	}
	busy = false
	l.Run(func() { lowered = Lowered() })
	if !lowered {
		t.Error("once the host is idle, a job ran at the process's priority")
	}
}

// TestHostBusyElsewhere: busy loops in other processes, two for each CPU,
// are seen within a few looks; a look with nothing before it, or one
// too long ago, knows nothing and says busy.
func TestHostBusyElsewhere(t *testing.T) {
	resetHost := func() {
		host.mu.Lock()
		host.at = time.Time{}
		host.mu.Unlock()
	}
	resetHost()
	t.Cleanup(resetHost)
	if !hostBusyElsewhere() {
		t.Error("the first look says the host is idle")
	}
	lowpriotest.Spin(t, 2*runtime.NumCPU())
	time.Sleep(2 * hostWindow)
	host.mu.Lock()
	first := host.at
	host.mu.Unlock()
	if !hostBusyElsewhere() {
		t.Error("busy loops on every CPU not seen")
	}
	host.mu.Lock()
	looked := host.at != first
	host.mu.Unlock()
	if !looked {
		t.Error("the second look did not look")
	}
	// The arithmetic: ticks are hundredths of a CPU-second.
	for _, tc := range []struct {
		all, self int64
		since     time.Duration
		want      float64
	}{
		{all: 100, self: 100, since: time.Second, want: 0},   // only this process
		{all: 150, self: 100, since: time.Second, want: 0.5}, // half a CPU elsewhere
		{all: 50, self: 0, since: 250 * time.Millisecond, want: 2},
	} {
		if got := cpusElsewhere(tc.all, tc.self, tc.since); got != tc.want {
			t.Errorf("cpusElsewhere(%d, %d, %v) = %v, want %v", tc.all, tc.self, tc.since, got, tc.want)
		}
	}
}
