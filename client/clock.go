package client

import "time"

// Clock tells the time and makes timers. A TokenSource uses the system clock
// unless WithClock gives another, which tests do to control refresh timing.
// Implementations must be safe for concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a channel that receives the time once d has elapsed,
	// and a function that stops the timer and reports whether it stopped it
	// before it fired.
	NewTimer(d time.Duration) (<-chan time.Time, func() bool)
}

// systemClock is the Clock of the time package.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}
