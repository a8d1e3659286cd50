// Package lowpriotest makes a host busy elsewhere, for tests of work on
// threads of lower CPU priority (package lowprio).
package lowpriotest

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Spin starts n processes that each keep a CPU busy at the test's own
// priority, until the test ends, or a minute has passed if the test
// process dies first (coreutils' timeout ends them).
func Spin(t testing.TB, n int) {
	t.Helper()
	for range n {
		cmd := exec.Command("timeout", "-s", "KILL", "60", "sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting a busy loop: %v", err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM) // timeout passes it on to the loop
			_ = cmd.Wait()
		})
	}
	time.Sleep(100 * time.Millisecond) // they are running
}
