//go:build !linux

package lowprio

// start is a go statement: elsewhere than on Linux, a priority is the
// process's, not a thread's.
func start(f func()) { go f() }

func lowered() bool { return false }
