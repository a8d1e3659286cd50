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
