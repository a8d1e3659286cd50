package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBenchRefreshAndRead runs both benchmarks at a tiny size through the
// command line, on a temporary SQLite file, and checks what they print.
func TestBenchRefreshAndRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	noEnv := func(string) string { return "" }

	var out, errb syncBuffer
	err := run(ctx, []string{"tokenkeeper", "bench", "refresh", "--credentials", "20", "--lifetime", "2s", "--window", "2s", "--latency", "1ms", "--json"},
		noEnv, strings.NewReader(""), &out, &errb)
	if err != nil {
		t.Fatalf("bench refresh: %v\n%s", err, errb.String())
	}
	var ref map[string]any
	if err := json.Unmarshal([]byte(out.String()), &ref); err != nil {
		t.Fatalf("bench refresh --json: %v\n%s", err, out.String())
	}
	if ref["credentials"] != 20.0 || ref["lifetime"] != "2s" || ref["window"] != "2s" || ref["refreshes"].(float64) < 20 ||
		!strings.HasPrefix(ref["database"].(string), "SQLite (") {
		t.Errorf("bench refresh --json: %s", out.String())
	}
	if !strings.Contains(errb.String(), "bench refresh: 20 credentials, lifetime 2s, provider latency 1ms, SQLite (") {
		t.Errorf("progress: %s", errb.String())
	}

	out = syncBuffer{}
	prof := filepath.Join(t.TempDir(), "read.prof")
	err = run(ctx, []string{"tokenkeeper", "bench", "read", "--connections", "2", "--duration", "200ms", "--cpu-profile", prof}, noEnv, strings.NewReader(""), &out, &errb)
	if err != nil {
		t.Fatalf("bench read: %v\n%s", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 || !regexp.MustCompile(`^bench read: 2 connections, 200ms each, body \d+ bytes$`).MatchString(lines[0]) {
		t.Fatalf("bench read printed:\n%s", out.String())
	}
	// The profile of the broker's runs, gzipped protobuf as pprof writes it.
	if b, err := os.ReadFile(prof); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("--cpu-profile wrote %d bytes (%v), not a gzipped profile", len(b), err)
	}
	for i, name := range []string{"bare net/http handler", "GET .../token, API key", "GET .../token, user JWT", "POST /oauth2/token, client"} {
		l := lines[i+1]
		if !strings.HasPrefix(l, "  "+name) || !strings.Contains(l, "errors 0") || (i > 0) != strings.Contains(l, "ratio ") {
			t.Errorf("line %q", l)
		}
	}
}

// TestBenchReadWrk drives bench read with the real wrk, two short rounds:
// every caller's requests succeed, each figure is there, and no secret is
// on wrk's command line (its requests are set by a Lua script).
func TestBenchReadWrk(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("wrk is required in CI (apt-get install wrk)")
		}
		t.Skip("wrk is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The bare handler in a child process of the real binary.
	bin := buildBinary(t, t.TempDir())
	var out, errb syncBuffer
	err := run(ctx, []string{"tokenkeeper", "bench", "read", "--wrk", "wrk", "--connections", "4", "--duration", "1s", "--rounds", "2", "--json",
		"--bare-process", "--binary", bin}, func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	if err != nil {
		t.Fatalf("bench read --wrk: %v\n%s", err, errb.String())
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("bench read --wrk --json: %v\n%s", err, out.String())
	}
	if rep["driver"] != "wrk -t2" || rep["rounds"] != 2.0 || rep["connections"] != 4.0 || rep["bare_in"] != "a separate process" {
		t.Errorf("report: %s", out.String())
	}
	for _, k := range []string{"bare", "apikey", "jwt", "client"} {
		// Tens of thousands of requests a second on loopback; a caller
		// whose requests were refused would show as errors.
		if rps, _ := rep[k+"_rps"].(float64); rps < 100 || rep[k+"_errors"] != 0.0 || rep[k+"_p99_ms"].(float64) <= 0 {
			t.Errorf("%s: rps %v, errors %v, p99 %v", k, rep[k+"_rps"], rep[k+"_errors"], rep[k+"_p99_ms"])
		}
		if r, _ := rep[k+"_ratio"].(float64); k != "bare" && (r <= 0 || r > 10) {
			t.Errorf("%s ratio %v", k, r)
		}
	}
	if n := strings.Count(errb.String(), "round 2: "); n != 4 {
		t.Errorf("progress shows %d runs of round 2, want 4:\n%s", n, errb.String())
	}
}

// TestBenchBareHandler: the hidden command behind bench read
// --bare-process answers its body until its standard input ends, and
// refuses an input without one.
func TestBenchBareHandler(t *testing.T) {
	for _, in := range []string{"", "not json\n", `{"body":""}` + "\n", `{"body":"e30="}`} { // the last: no newline
		var out, errb syncBuffer
		err := run(context.Background(), []string{"tokenkeeper", "bench", "bare-handler"}, func(string) string { return "" },
			strings.NewReader(in), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), "standard input holds no body") || exitCode(err) != 2 {
			t.Errorf("%q: err %v; want a usage error", in, err)
		}
	}
	pr, pw := io.Pipe()
	var out, errb syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{"tokenkeeper", "bench", "bare-handler"}, func(string) string { return "" }, pr, &out, &errb)
	}()
	fmt.Fprintln(pw, `{"body":"eyJhIjoxfQo="}`) // {"a":1}\n
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		url = strings.TrimSpace(out.String())
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %q: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "{\"a\":1}\n" || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("answer %q, headers %v", body, resp.Header)
	}
	pw.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("bare-handler: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bare-handler still runs after its standard input ended")
	}
}

func TestBenchFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"refresh", "--credentials", "0"}, "--credentials must be positive"},
		{[]string{"refresh", "--lifetime", "1s"}, "--lifetime at least 2s"},
		{[]string{"refresh", "--window", "-1s"}, "--window must not be negative"},
		{[]string{"read", "--connections", "0"}, "--connections must be from 1 to 4096"},
		{[]string{"read", "--duration", "0s"}, "--duration positive"},
		{[]string{"read", "--connections", "x"}, "invalid value"},
		{[]string{"read", "--wrk", "wrk", "--duration", "500ms"}, "--duration must be whole seconds with --wrk"},
		{[]string{"read", "--rounds", "0"}, "--rounds must be from 1 to 100"},
		{[]string{"read", "--cpu-profile", "/nonexistent/dir/read.prof"}, "--cpu-profile: open /nonexistent/dir/read.prof"},
		{[]string{"scale", "--cpu-profile", "/nonexistent/dir/scale.prof"}, "--cpu-profile: open /nonexistent/dir/scale.prof"},
		{[]string{"read", "--wrk-threads", "0"}, "--wrk-threads must be from 1 to 256"},
	} {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper", "bench"}, tc.args...),
			func(string) string { return "" }, strings.NewReader(""), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 {
			t.Errorf("%v: err %v; want a usage error containing %q", tc.args, err, tc.want)
		}
	}
}

// TestBenchRefreshOnABusyHost: with busy loops in other processes at the
// broker's own priority, two for each CPU, tokens of 2 s are all still
// refreshed before they expire. Claims and commits run at the process's
// priority (TestClaimsAndCommitsAtTheProcessPriority): on niced threads
// they yielded to the busy loops, and tokens here came late.
func TestBenchRefreshOnABusyHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spin(t, 2*runtime.NumCPU())
	var out, errb syncBuffer
	err := run(ctx, []string{"tokenkeeper", "bench", "refresh", "--credentials", "20", "--lifetime", "2s", "--window", "4s", "--latency", "1ms", "--json"},
		func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	if err != nil {
		t.Fatalf("bench refresh: %v\n%s", err, errb.String())
	}
	var rep struct {
		Pct       float64 `json:"refreshed_before_expiry_pct"`
		Late      int     `json:"late_refreshes"`
		Expired   int     `json:"expired_unrefreshed"`
		Refreshes int     `json:"refreshes"`
	}
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("bench refresh --json: %v\n%s", err, out.String())
	}
	if rep.Refreshes < 20 || rep.Pct != 100 || rep.Late != 0 || rep.Expired != 0 {
		t.Errorf("on a busy host: %d refreshes, %.2f%% before expiry, %d late, %d expired unrefreshed; want 20 or more, 100%%, 0, 0",
			rep.Refreshes, rep.Pct, rep.Late, rep.Expired)
	}
}

// spin starts n processes that each keep a CPU busy at the test's own
// priority, until the test ends, or a minute has passed if the test
// process dies first (coreutils' timeout ends them): a host busy
// elsewhere.
func spin(t *testing.T, n int) {
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
