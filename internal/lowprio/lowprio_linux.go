package lowprio

import (
	"runtime"

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
