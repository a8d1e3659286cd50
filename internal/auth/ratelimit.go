package auth

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Rate is a token-bucket rate: on average Limit events per Per, with up to
// Burst at once. The zero Rate means the default of the field it sets.
type Rate struct {
	Limit    int
	Per      time.Duration
	Burst    int
	Disabled bool // no limit at all
}

// DefaultLoginRate allows 5 login attempts a minute, 10 at once, per
// username and client address together: the tightest limit, so that one
// address guessing one user's password is slowed down first.
var DefaultLoginRate = Rate{Limit: 5, Per: time.Minute, Burst: 10}

// DefaultLoginRateUser allows 30 login attempts a minute, 60 at once, per
// username from all addresses together: looser than DefaultLoginRate, so
// that an attacker at one address cannot lock the user out of login, yet
// bounding a guess spread over many addresses.
var DefaultLoginRateUser = Rate{Limit: 30, Per: time.Minute, Burst: 60}

// DefaultLoginRateAddress allows 20 login attempts a minute, 30 at once,
// per client address for all usernames together (password spraying).
var DefaultLoginRateAddress = Rate{Limit: 20, Per: time.Minute, Burst: 30}

// maxLimiterKeys bounds each bucket map: past it, refilled buckets are
// dropped, and if that is not enough the map is cleared (failing open
// rather than growing without bound under a flood of distinct names).
const maxLimiterKeys = 100_000

type bucket struct {
	tokens float64
	last   time.Time
}

// limiter is one keyed set of token buckets; its owner serialises access.
type limiter struct {
	rate     Rate
	interval time.Duration // time to earn one token
	buckets  map[string]*bucket
}

func newLimiter(r Rate) *limiter {
	l := &limiter{rate: r, buckets: make(map[string]*bucket)}
	if !r.Disabled {
		l.interval = r.Per / time.Duration(r.Limit)
	}
	return l
}

// level returns the tokens in b at now without changing b.
func (l *limiter) level(b *bucket, now time.Time) float64 {
	if b == nil {
		return float64(l.rate.Burst)
	}
	t := b.tokens
	if el := now.Sub(b.last); el > 0 {
		t += float64(el) / float64(l.interval)
	}
	return min(t, float64(l.rate.Burst))
}

// wait returns how long until key has a token, 0 if it has one now.
func (l *limiter) wait(key string, now time.Time) time.Duration {
	t := l.level(l.buckets[key], now)
	if t >= 1 {
		return 0
	}
	return time.Duration((1 - t) * float64(l.interval))
}

// take removes one token from key's bucket; the caller checked wait.
func (l *limiter) take(key string, now time.Time) {
	b := l.buckets[key]
	t := l.level(b, now)
	if b == nil {
		if len(l.buckets) >= maxLimiterKeys {
			l.sweep(now)
		}
		b = &bucket{}
		l.buckets[key] = b
	}
	b.tokens, b.last = t-1, now
}

// sweep drops full buckets, and everything if the map is still too big.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if l.level(b, now) >= float64(l.rate.Burst) {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxLimiterKeys {
		clear(l.buckets)
	}
}

// loginLimiter limits login attempts per username, per client address and
// per username and address together. It is safe for concurrent use.
type loginLimiter struct {
	mu    sync.Mutex
	users *limiter // guarded by mu
	addrs *limiter // guarded by mu
	pairs *limiter // guarded by mu
}

func newLoginLimiter(users, addrs Rate, pair ...Rate) *loginLimiter {
	p := Rate{Disabled: true}
	if len(pair) > 0 {
		p = pair[0]
	}
	return &loginLimiter{users: newLimiter(users), addrs: newLimiter(addrs), pairs: newLimiter(p)}
}

// allow counts one attempt for username from remoteAddr at now. It returns
// 0 when the attempt may proceed, or how long to wait; a refused attempt
// consumes nothing.
func (ll *loginLimiter) allow(username, remoteAddr string, now time.Time) time.Duration {
	uk, ak := userKey(username), addrKey(remoteAddr)
	pk := uk + "\x00" + ak
	ll.mu.Lock()
	defer ll.mu.Unlock()
	var wait time.Duration
	if !ll.pairs.rate.Disabled {
		wait = ll.pairs.wait(pk, now)
	}
	if !ll.users.rate.Disabled {
		wait = max(wait, ll.users.wait(uk, now))
	}
	if !ll.addrs.rate.Disabled {
		wait = max(wait, ll.addrs.wait(ak, now))
	}
	if wait > 0 {
		return wait
	}
	if !ll.pairs.rate.Disabled {
		ll.pairs.take(pk, now)
	}
	if !ll.users.rate.Disabled {
		ll.users.take(uk, now)
	}
	if !ll.addrs.rate.Disabled {
		ll.addrs.take(ak, now)
	}
	return 0
}

// sweep forgets buckets that have refilled.
func (ll *loginLimiter) sweep(now time.Time) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	ll.users.sweep(now)
	ll.addrs.sweep(now)
	ll.pairs.sweep(now)
}

// userKey folds case, so that "Alice" and "alice" share a bucket.
func userKey(username string) string {
	if len(username) > 128 {
		username = username[:128]
	}
	return strings.ToLower(username)
}

// addrKey reduces a client address ("ip:port" or "ip") to its IP, and an
// IPv6 address to its /64, since one host commonly holds a whole /64.
func addrKey(remoteAddr string) string {
	host := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		if len(host) > 128 {
			host = host[:128]
		}
		return host
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
