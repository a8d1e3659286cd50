package lowprio

import (
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func start(f func()) {
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with f
		lower()
		f()
	}()
}

// lower raises the calling thread's nice value by Nice (on Linux a
// priority is per thread, and PRIO_PROCESS with a thread id sets one
// thread's). Raising it needs no privilege; a failure leaves the thread as
// it was, which is only slower to yield.
func lower() {
	tid := unix.Gettid()
	cur, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return
	}
	// The raw system call returns 20 - nice.
	_ = unix.Setpriority(unix.PRIO_PROCESS, tid, min(20-cur+Nice, 19))
}

// startPriority is the process's priority when it started (the raw
// system call's 20 - nice), read before any thread was lowered: the main
// thread's own may be lowered later, if a goroutine Go starts runs on it.
var startPriority, startErr = unix.Getpriority(unix.PRIO_PROCESS, 0)

// lowered compares the calling thread's priority with the process's at
// start.
func lowered() bool {
	self, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	return err == nil && startErr == nil && self < startPriority
}

// startWorker starts w's goroutine on a thread of its own, lowers the
// thread's priority and runs the jobs it receives with work until w.stop
// is closed. It reports false, and starts nothing, if the thread's run
// delay cannot be read: a niced thread that cannot be watched is not used.
func startWorker(w *laneWorker, work func(*laneJob, func() (time.Duration, bool))) bool {
	ok := make(chan bool)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the worker
		// The file names this thread for as long as it stays open.
		f, err := os.Open("/proc/thread-self/schedstat")
		if err == nil {
			if _, rok := readRunDelay(f); !rok {
				f.Close()
				err = os.ErrInvalid
			}
		}
		if err != nil {
			ok <- false
			return
		}
		defer f.Close()
		lower()
		ok <- true
		defer close(w.done)
		runDelay := func() (time.Duration, bool) { return readRunDelay(f) }
		for {
			select {
			case j := <-w.jobs:
				work(j, runDelay)
			case <-w.stop:
				return
			}
		}
	}()
	return <-ok
}

// readRunDelay reads a schedstat file's second field: the time its thread
// has spent runnable, waiting for a CPU, in nanoseconds.
func readRunDelay(f *os.File) (time.Duration, bool) {
	var buf [96]byte
	n, err := f.ReadAt(buf[:], 0)
	if n == 0 || (err != nil && err != io.EOF) {
		return 0, false
	}
	fields := strings.Fields(string(buf[:n]))
	if len(fields) < 2 {
		return 0, false
	}
	d, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(d), true
}
