package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestLoginLimiter(t *testing.T) {
	ll := newLoginLimiter(DefaultLoginRate, Rate{Limit: 20, Per: time.Minute, Burst: 30})
	now := testNow
	for i := range 10 {
		if w := ll.allow("alice", "192.0.2.1:1000", now); w != 0 {
			t.Fatalf("attempt %d refused (wait %s)", i+1, w)
		}
	}
	w := ll.allow("alice", "192.0.2.1:1000", now)
	if w != 12*time.Second {
		t.Fatalf("11th attempt: wait %s, want 12s (one token per 60s/5)", w)
	}
	// Case does not escape the per-username limit, nor does another address.
	if ll.allow("ALICE", "198.51.100.7:1", now) == 0 {
		t.Fatal("username limit bypassed by case and address")
	}
	// Refused attempts consume nothing: after the wait, exactly one passes.
	now = now.Add(w)
	if w := ll.allow("alice", "192.0.2.1:2000", now); w != 0 {
		t.Fatalf("after Retry-After: wait %s", w)
	}
	if ll.allow("alice", "192.0.2.1:2000", now) == 0 {
		t.Fatal("a second attempt passed after one refill")
	}
	// Other users from the same address pass until the address runs out:
	// burst 30, 10 used, 4 earned back in the 12s wait (one per 3s), 1 used.
	passed := 0
	for i := range 40 {
		if ll.allow(fmt.Sprintf("user%d", i), "192.0.2.1:3000", now) == 0 {
			passed++
		}
	}
	if passed != 23 {
		t.Fatalf("address allowed %d more attempts, want 23", passed)
	}
	// The buckets refill completely.
	now = now.Add(2 * time.Minute)
	ll.sweep(now)
	if n := len(ll.users.buckets) + len(ll.addrs.buckets); n != 0 {
		t.Fatalf("%d buckets left after refilling", n)
	}
	if ll.allow("alice", "192.0.2.1:1000", now) != 0 {
		t.Fatal("refused after refill")
	}
}

func TestLoginLimiterDisabled(t *testing.T) {
	ll := newLoginLimiter(Rate{Disabled: true}, Rate{Disabled: true})
	for range 1000 {
		if ll.allow("alice", "192.0.2.1:1", testNow) != 0 {
			t.Fatal("disabled limiter refused")
		}
	}
}

func TestLimiterBounded(t *testing.T) {
	l := newLimiter(DefaultLoginRate)
	for i := range maxLimiterKeys + 10 {
		l.take(fmt.Sprint(i), testNow)
	}
	if len(l.buckets) > maxLimiterKeys {
		t.Fatalf("%d buckets", len(l.buckets))
	}
}

func TestAddrKey(t *testing.T) {
	tests := map[string]string{
		"192.0.2.1:4444":             "192.0.2.1",
		"192.0.2.1":                  "192.0.2.1",
		"[::ffff:192.0.2.1]:80":      "192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ff::1]:1":     "2001:db8:1:2::/64",
		"[fe80::1%eth0]:1":           "fe80::/64",
		"not-an-ip":                  "not-an-ip",
		"":                           "",
	}
	for in, want := range tests {
		if got := addrKey(in); got != want {
			t.Errorf("addrKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRateLimitError(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int64
	}{{0, 1}, {time.Millisecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {12 * time.Second, 12}} {
		if got := (&RateLimitError{RetryAfter: tt.d}).RetryAfterSeconds(); got != tt.want {
			t.Errorf("RetryAfterSeconds(%s) = %d, want %d", tt.d, got, tt.want)
		}
	}
}
