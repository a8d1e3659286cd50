package lowprio

import (
	"bytes"
	"os"
	"strconv"
	"sync"
	"time"
)

// The look at the host that a Lane takes before it runs a job niced.
const (
	// hostWindow is the least time between two looks; a look more than
	// hostStale after the one before it knows nothing of the time between
	// (a burst of load averaged over minutes looks like none).
	hostWindow = 250 * time.Millisecond
	hostStale  = 2 * time.Second
	// busyCPUs is how many CPUs other processes may keep busy, on
	// average over the window, before a niced thread would wait for them.
	busyCPUs = 0.5
	// userHZ is the unit of /proc's CPU times: 100 a second on every Linux
	// architecture Go runs on.
	userHZ = 100
)

// host is the last look at the host's CPU time and this process's.
var host struct {
	mu        sync.Mutex
	at        time.Time // zero: no look yet
	all, self int64     // CPU time in ticks: the host's busy, this process's
	busy      bool      // other processes kept busyCPUs busy since the look before, or that is unknown
}

// hostBusyElsewhere reports whether, between its last two looks at the
// host, other processes kept more than busyCPUs busy, or that is not
// known (no look before, one too long ago, or /proc unreadable).
func hostBusyElsewhere() bool {
	host.mu.Lock()
	defer host.mu.Unlock()
	now := time.Now()
	since := now.Sub(host.at)
	if !host.at.IsZero() && since < hostWindow {
		return host.busy
	}
	all, ok1 := hostBusyTicks()
	self, ok2 := selfTicks()
	host.busy = true
	if ok1 && ok2 && !host.at.IsZero() && since <= hostStale {
		host.busy = cpusElsewhere(all-host.all, self-host.self, since) >= busyCPUs
	}
	host.at, host.all, host.self = now, all, self
	if !ok1 || !ok2 {
		host.at = time.Time{}
	}
	return host.busy
}

// cpusElsewhere is how many CPUs other processes kept busy on average
// over since, in which the host's CPUs were busy for all ticks and this
// process for self.
func cpusElsewhere(all, self int64, since time.Duration) float64 {
	return float64(all-self) / userHZ / since.Seconds()
}

// hostBusyTicks is the CPU time all CPUs spent running anything, in
// ticks: /proc/stat's first line, user, nice, system, irq and softirq
// (not idle, iowait or steal).
func hostBusyTicks() (int64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 8 || string(f[0]) != "cpu" {
		return 0, false
	}
	var sum int64
	for _, i := range []int{1, 2, 3, 6, 7} {
		n, err := strconv.ParseInt(string(f[i]), 10, 64)
		if err != nil {
			return 0, false
		}
		sum += n
	}
	return sum, true
}

// selfTicks is the CPU time this process has spent, in ticks: utime and
// stime of /proc/self/stat (fields 14 and 15).
func selfTicks() (int64, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')') // the name may hold spaces and parentheses
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	var sum int64
	for _, s := range f[11:13] { // f[0] is field 3
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil {
			return 0, false
		}
		sum += n
	}
	return sum, true
}
