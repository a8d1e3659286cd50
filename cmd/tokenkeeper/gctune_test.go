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
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, maxGCPercent},
		{1 << 20, maxGCPercent}, // 1 MiB: 6300 would be the floor
		{4 << 20, 1500},         // 4 MiB live, goal 64 MiB
		{16 << 20, 300},         // 16 MiB live, goal 64 MiB
		{30 << 20, 113},         // just under half the floor
		{32 << 20, 100},         // half the floor and more: Go's default
		{500 << 20, 100},        // a large fleet: unchanged
		{heapFloor/2 - 1, 100},  // goal a little over the floor
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
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
