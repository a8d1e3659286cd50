package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name     string
		live     uint64
		rate     float64 // bytes a second
		headroom uint64
		want     int
	}{
		{"nothing live", 0, 0, maxHeadroom, maxGCPercent},
		{"1 MiB, idle: the floor, capped", 1 * mib, 0, maxHeadroom, maxGCPercent}, // 6300 would be the floor
		{"4 MiB, idle: goal 64 MiB", 4 * mib, 0, maxHeadroom, 1500},
		{"16 MiB, idle", 16 * mib, 0, maxHeadroom, 300},
		{"just under half the floor", 30 * mib, 0, maxHeadroom, 113},
		{"half the floor: Go's default", 32 * mib, 0, maxHeadroom, 100},
		{"a large fleet, idle: unchanged", 500 * mib, 0, maxHeadroom, 100},
		{"goal a little over the floor", heapFloor/2 - 1, 0, maxHeadroom, 100},
		// Allocating: the goal is what 10 s allocate, beyond the live heap.
		{"16 MiB, 1 MiB/s: the floor is more", 16 * mib, 1 * mib, maxHeadroom, 300},
		{"20 MiB, 20 MiB/s: 200 MiB for 10 s", 20 * mib, 20 * mib, maxHeadroom, 1000},
		{"40 MiB, 20 MiB/s", 40 * mib, 20 * mib, maxHeadroom, 500},
		{"100 MiB, 50 MiB/s: at most 256 MiB beyond", 100 * mib, 50 * mib, maxHeadroom, 256},
		{"1 GiB, 50 MiB/s: Go's default is more", 1024 * mib, 50 * mib, maxHeadroom, 100},
		{"a cgroup limit of 512 MiB: 128 MiB beyond", 100 * mib, 50 * mib, headroomLimit(512 * mib), 128},
		{"a tiny cgroup limit keeps the floor", 16 * mib, 50 * mib, headroomLimit(64 * mib), 300},
		{"2 MiB, 50 MiB/s: capped", 2 * mib, 50 * mib, maxHeadroom, maxGCPercent},
	} {
		if got := gcPercentFor(c.live, c.rate, c.headroom); got != c.want {
			t.Errorf("%s: gcPercentFor(%d MiB, %.0f MiB/s, %d MiB) = %d, want %d", c.name, c.live/mib, c.rate/mib, c.headroom/mib, got, c.want)
		}
	}
}

func TestHeadroomLimit(t *testing.T) {
	for _, c := range []struct{ limit, want uint64 }{
		{0, maxHeadroom},
		{4 << 30, maxHeadroom},
		{1 << 30, maxHeadroom},
		{512 << 20, 128 << 20},
		{1, 0},
	} {
		if got := headroomLimit(c.limit); got != c.want {
			t.Errorf("headroomLimit(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
}

func TestCgroupMemoryFiles(t *testing.T) {
	for _, c := range []struct {
		in   string
		path string
		ok   bool
	}{
		{"0::/system.slice/tokenkeeper.service\n", "/system.slice/tokenkeeper.service", true},
		{"4:memory:/docker/abc\n1:cpu:/\n0::/\n", "/", true},
		{"4:memory:/docker/abc\n1:cpu:/\n", "", false}, // cgroup v1 only
		{"0::/../etc\n", "", false},
		{"0::relative\n", "", false},
		{"", "", false},
	} {
		if p, ok := cgroupV2Path(c.in); p != c.path || ok != c.ok {
			t.Errorf("cgroupV2Path(%q) = %q %v, want %q %v", c.in, p, ok, c.path, c.ok)
		}
	}
	for _, c := range []struct {
		in   string
		want uint64
	}{
		{"max\n", 0},
		{"536870912\n", 512 << 20},
		{"", 0},
		{"-1\n", 0},
		{"lots", 0},
	} {
		if got := parseMemoryMax(c.in); got != c.want {
			t.Errorf("parseMemoryMax(%q) = %d, want %d", c.in, got, c.want)
		}
	}
	_ = cgroupMemoryLimit() // reads this machine's: any value, no panic
}

// TestTuneGC runs the tuner in a child process (it changes the process's
// collector): after a collection GOGC is set for the floor while a broker
// runs, set back to 100 once the last has stopped, and an operator's GOGC
// is left alone.
func TestTuneGC(t *testing.T) {
	if os.Getenv("TK_TUNEGC_CHILD") != "" {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		before := s[0].Value.Uint64()
		release := tuneGC()
		for range 3 {
			runtime.GC() // each collection runs the tuner (a finalizer) again
		}
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if metrics.Read(s); s[0].Value.Uint64() != before {
				break
			}
		}
		fmt.Printf("gogc=%d\n", s[0].Value.Uint64())
		second := tuneGC() // another broker
		release()
		release() // twice: counts once
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
		metrics.Read(s)
		fmt.Printf("one left=%d\n", s[0].Value.Uint64())
		second()
		for range 3 {
			runtime.GC() // no tuner left to raise it again
		}
		time.Sleep(50 * time.Millisecond)
		metrics.Read(s)
		fmt.Printf("none left=%d\n", s[0].Value.Uint64())
		return
	}
	run := func(env ...string) map[string]string {
		return runTestChild(t, "TestTuneGC", "gogc", append(env, "TK_TUNEGC_CHILD=1")...)
	}
	got := run()
	if got["gogc"] == "100" || got["one left"] == "100" {
		t.Errorf("GOGC after a collection with the tuner on: %s, with one of two brokers left: %s; want it raised for a heap of a few MiB", got["gogc"], got["one left"])
	}
	if got["none left"] != "100" {
		t.Errorf("GOGC once every broker stopped: %s, want 100", got["none left"])
	}
	if got := run("GOGC=150"); got["gogc"] != "150" || got["none left"] != "150" {
		t.Errorf("GOGC=150 set by the operator: the tuner made it %v", got)
	}
}

// TestTuneProcs runs tuneProcs in a child process (it changes the
// process's scheduler): one P more than the default while a broker runs,
// the default again once the last has stopped, and an operator's
// GOMAXPROCS left alone.
func TestTuneProcs(t *testing.T) {
	if os.Getenv("TK_TUNEPROCS_CHILD") != "" {
		fmt.Printf("before=%d\n", runtime.GOMAXPROCS(0))
		release := tuneProcs()
		fmt.Printf("one=%d\n", runtime.GOMAXPROCS(0))
		second := tuneProcs() // another broker: no more
		fmt.Printf("two=%d\n", runtime.GOMAXPROCS(0))
		release()
		release() // twice: counts once
		fmt.Printf("one left=%d\n", runtime.GOMAXPROCS(0))
		second()
		fmt.Printf("none left=%d\n", runtime.GOMAXPROCS(0))
		return
	}
	run := func(env ...string) map[string]string {
		return runTestChild(t, "TestTuneProcs", "before", append(env, "TK_TUNEPROCS_CHILD=1")...)
	}
	got := run()
	before, _ := strconv.Atoi(got["before"])
	want := strconv.Itoa(before + 1)
	if got["one"] != want || got["two"] != want || got["one left"] != want || got["none left"] != got["before"] {
		t.Errorf("GOMAXPROCS %v; want %s while a broker runs, %s once none does", got, want, got["before"])
	}
	if got := run("GOMAXPROCS=1"); got["before"] != "1" || got["one"] != "1" || got["none left"] != "1" {
		t.Errorf("GOMAXPROCS=1 set by the operator: the tuner made it %v", got)
	}
}

// TestTuneGCFollowsAllocation runs the tuner in a child process with 40
// MiB live (the floor alone leaves Go's default): while the heap is
// allocated fast, GOGC is raised so that collections come about gcSpacing
// apart; once allocation stops, it is Go's default again.
func TestTuneGCFollowsAllocation(t *testing.T) {
	if os.Getenv("TK_TUNEGC_RATE_CHILD") != "" {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		live := make([]byte, 40<<20)
		for i := range live {
			live[i] = byte(i)
		}
		release := tuneGC()
		defer release()
		runtime.GC()
		read := func() uint64 {
			// The tuner runs in a finalizer after the collection: wait for it.
			time.Sleep(50 * time.Millisecond)
			metrics.Read(s)
			return s[0].Value.Uint64()
		}
		fmt.Printf("idle=%d\n", read())
		var sink [][]byte
		for i := range 200 { // 200 MiB in a fraction of a second
			sink = append(sink, make([]byte, 1<<20))
			if len(sink) > 8 {
				sink = sink[1:]
			}
			_ = i
		}
		runtime.GC()
		fmt.Printf("allocating=%d\n", read())
		time.Sleep(time.Second)
		runtime.GC() // a second of nothing allocated since the last
		fmt.Printf("stopped=%d\n", read())
		runtime.KeepAlive(live)
		runtime.KeepAlive(sink)
		return
	}
	got := runTestChild(t, "TestTuneGCFollowsAllocation", "stopped", "TK_TUNEGC_RATE_CHILD=1")
	if got["idle"] != "100" {
		t.Errorf("GOGC with 40 MiB live before any allocation: %s, want 100 (twice the live heap is over the floor)", got["idle"])
	}
	// 200 MiB allocated in well under 10 s: the goal is 256 MiB beyond the
	// 40 MiB live heap (GOGC 640), or less where a cgroup limits memory.
	if n, _ := strconv.Atoi(got["allocating"]); n <= 100 {
		t.Errorf("GOGC while allocating fast: %s, want it raised", got["allocating"])
	}
	if got["stopped"] != "100" {
		t.Errorf("GOGC once allocation stopped: %s, want 100 again", got["stopped"])
	}
}

// runTestChild runs the test named test again in a child process with env
// added to its environment (the test does its work there when it finds
// its variable), and returns the KEY=VALUE lines it printed; the child
// must print key.
func runTestChild(t *testing.T, test, key string, env ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			got[k] = v
		}
	}
	if got[key] == "" {
		t.Fatalf("child printed no %s:\n%s", key, out)
	}
	return got
}
