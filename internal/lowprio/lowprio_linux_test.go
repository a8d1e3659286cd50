package lowprio

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// threadNice is the calling thread's nice value, from the kernel's
// /proc/thread-self/stat (field 19), which the runtime does not cache.
func threadNice(t *testing.T) int {
	b, err := os.ReadFile("/proc/thread-self/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // the name may hold spaces
	n, err := strconv.Atoi(fields[16])                            // field 3 is fields[0]
	if err != nil {
		t.Fatalf("nice in %q: %v", s, err)
	}
	return n
}

// TestGoLowersItsThreadOnly: f runs on a thread whose nice value is
// Nice more than the process's; threads running other goroutines, also
// after f has returned, keep theirs.
func TestGoLowersItsThreadOnly(t *testing.T) {
	runtime.LockOSThread()
	base := threadNice(t)
	runtime.UnlockOSThread()

	// Each goroutine's channel is closed once it has returned.
	got := make(chan int, 8)
	var dones []<-chan struct{}
	for range 8 {
		dones = append(dones, Go(func() { got <- threadNice(t) }))
	}
	for _, d := range dones {
		<-d
	}
	if len(got) != 8 {
		t.Fatalf("%d of 8 goroutines had run when their channels were closed", len(got))
	}
	close(got)
	want := min(base+Nice, 19)
	for n := range got {
		if n != want {
			t.Errorf("a background goroutine's thread has nice %d, want %d (process: %d)", n, want, base)
		}
	}
	// The threads that ran them are gone: every thread now running a
	// goroutine has the process's priority.
	var wg sync.WaitGroup
	var mu sync.Mutex
	others := map[int]bool{}
	for range 32 {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			n := threadNice(t)
			mu.Lock()
			others[n] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(others) != 1 || !others[base] {
		t.Errorf("other goroutines' threads have nice values %v, want only %d", others, base)
	}
}

// Lowered tells a goroutine started by Go from one that was not, even
// locked to a thread of its own.
func TestLowered(t *testing.T) {
	var in bool
	<-Go(func() { in = Lowered() })
	out := make(chan bool)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		out <- Lowered()
	}()
	if !in || <-out || Lowered() {
		t.Fatalf("Lowered: %v in Go, want true; false elsewhere", in)
	}
}
