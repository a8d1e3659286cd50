// Package lowprio runs a broker's background work that may wait (pruning
// events, vacuuming, writing audit records) on operating-system threads
// of lower CPU priority than the threads that serve requests.
//
// Go's scheduler has no priorities: a token read that becomes runnable
// while every P runs background work waits in a queue, and on a machine
// with few CPUs the kernel shares them among the process's threads in
// slices of milliseconds. A goroutine started with Go runs locked to a
// thread of its own whose nice value is raised: when that thread and a
// serving thread are both ready, the kernel runs the serving one first,
// and the background work takes the CPU time the serving leaves. On an
// otherwise idle CPU a niced thread runs at full speed; but it yields to
// every other process's threads too (unless the process has a CPU cgroup
// of its own), so on a host busy elsewhere it may wait for seconds. Work
// that keeps tokens fresh (claiming and committing refreshes) must not
// run here.
//
// The thread ends with its goroutine (the goroutine never unlocks it), so
// its priority never passes to other goroutines. Elsewhere than Linux, Go
// is a plain go statement.
package lowprio

// Nice is the nice value added to a background thread's. 10 gives a
// serving thread about ten times its weight in the kernel's scheduler
// (Linux's weights: 1024 at 0, 110 at 10).
const Nice = 10

// Go runs f in a new goroutine on a thread of its own with lower CPU
// priority (see the package's documentation). The channel it returns is
// closed when f has returned.
func Go(f func()) <-chan struct{} {
	done := make(chan struct{})
	start(func() { defer close(done); f() })
	return done
}

// Lowered reports whether the calling goroutine runs on a thread whose
// priority Go lowered (false elsewhere than Linux). For tests: the
// goroutine must be locked to its thread for the answer to hold.
func Lowered() bool { return lowered() }
