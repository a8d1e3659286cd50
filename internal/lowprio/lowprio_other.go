//go:build !linux

package lowprio

import "time"

// start is a go statement: elsewhere than on Linux, a priority is the
// process's, not a thread's.
func start(f func()) { go f() }

func lowered() bool { return false }

// startWorker starts nothing: elsewhere than on Linux, a lane runs its
// jobs directly.
func startWorker(*laneWorker, func(*laneJob, func() (time.Duration, bool))) bool { return false }

// hostBusyElsewhere is never asked: elsewhere than on Linux, a lane has
// no niced thread.
func hostBusyElsewhere() bool { return true }
