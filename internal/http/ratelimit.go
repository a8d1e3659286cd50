package http

import (
	"sync"
	"time"
)

// buckets is a keyed set of token buckets: on average limit events per
// per, with up to burst at once, for each key. It is safe for concurrent
// use and bounded in size: past maxKeys it forgets full buckets, and if
// that is not enough, all of them (failing open rather than growing
// without bound under a flood of distinct keys).
type buckets struct {
	interval time.Duration // time to earn one token
	burst    float64
	maxKeys  int

	mu sync.Mutex
	m  map[string]*bucketState // guarded by mu
}

type bucketState struct {
	tokens float64
	last   time.Time
}

func newBuckets(limit int, per time.Duration, burst int) *buckets {
	return &buckets{interval: per / time.Duration(limit), burst: float64(burst), maxKeys: 100_000, m: map[string]*bucketState{}}
}

func (b *buckets) level(st *bucketState, now time.Time) float64 {
	if st == nil {
		return b.burst
	}
	t := st.tokens
	if el := now.Sub(st.last); el > 0 {
		t += float64(el) / float64(b.interval)
	}
	return min(t, b.burst)
}

// allow takes one token from key's bucket at now, or reports how long
// until one is available (taking nothing).
func (b *buckets) allow(key string, now time.Time) (ok bool, wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.m[key]
	t := b.level(st, now)
	if t < 1 {
		return false, time.Duration((1 - t) * float64(b.interval))
	}
	if st == nil {
		if len(b.m) >= b.maxKeys {
			b.sweepLocked(now)
		}
		st = &bucketState{}
		b.m[key] = st
	}
	st.tokens, st.last = t-1, now
	return true, 0
}

func (b *buckets) sweepLocked(now time.Time) {
	for k, st := range b.m {
		if b.level(st, now) >= b.burst {
			delete(b.m, k)
		}
	}
	if len(b.m) >= b.maxKeys {
		clear(b.m)
	}
}

// peek reports how long until key has a token, 0 if it has one now; it
// takes nothing.
func (b *buckets) peek(key string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.level(b.m[key], now)
	if t >= 1 {
		return 0
	}
	return time.Duration((1 - t) * float64(b.interval))
}

// sweep forgets the buckets that have refilled.
func (b *buckets) sweep(now time.Time) {
	b.mu.Lock()
	b.sweepLocked(now)
	b.mu.Unlock()
}
