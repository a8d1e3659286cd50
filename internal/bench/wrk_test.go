package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A report of wrk 4.1.0 run with --latency, as it prints it.
const wrkSample = `Running 8s test @ http://127.0.0.1:41235/v1/credentials/bench/token
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.68ms    1.93ms  36.07ms   88.61%
    Req/Sec    21.35k     2.37k   27.43k    68.75%
  Latency Distribution
     50%    1.02ms
     75%    1.94ms
     90%    3.79ms
     99%    9.16ms
  339852 requests in 8.00s, 84.92MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  42476.51
Transfer/sec:     10.61MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkSample)
	if err != nil {
		t.Fatal(err)
	}
	want := ReadRun{Requests: 339852, Errors: 6, RequestsPerSecond: 42476.51, P50: 1020 * time.Microsecond, P99: 9160 * time.Microsecond}
	if r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	// Other units, and a clean run.
	clean := strings.NewReplacer("1.02ms", "812.00us", "9.16ms", "1.20s",
		"  Non-2xx or 3xx responses: 3\n", "", "  Socket errors: connect 0, read 2, write 0, timeout 1\n", "").Replace(wrkSample)
	if r, err := parseWrk(clean); err != nil || r.P50 != 812*time.Microsecond || r.P99 != 1200*time.Millisecond || r.Errors != 0 {
		t.Errorf("got %+v, %v", r, err)
	}
	for _, bad := range []string{
		"",
		"unable to connect to 127.0.0.1:1 Connection refused\n",
		strings.Replace(wrkSample, "     99%    9.16ms\n", "", 1), // no --latency
	} {
		if _, err := parseWrk(bad); err == nil {
			t.Errorf("parseWrk(%q): no error", bad)
		}
	}
}

func TestWrkScript(t *testing.T) {
	s, err := wrkScript(loadTarget{key: "client", auth: `Basic YmVuY2g6c2"x\y`, form: "grant_type=client_credentials&scope=credential%3Abench"})
	if err != nil {
		t.Fatal(err)
	}
	want := `wrk.method = "POST"
wrk.body = "grant_type=client_credentials&scope=credential%3Abench"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic YmVuY2g6c2\"x\\y"
`
	if s != want {
		t.Errorf("got:\n%s\nwant:\n%s", s, want)
	}
	if s, err := wrkScript(loadTarget{key: "bare"}); err != nil || s != "" {
		t.Errorf("bare: %q, %v", s, err)
	}
	if _, err := wrkScript(loadTarget{key: "x", auth: "Bearer a\nb"}); err == nil || strings.Contains(err.Error(), "Bearer") {
		t.Errorf("a header with a newline: %v (and the error must not quote it)", err)
	}
}

// TestReadReportRounds: with several rounds, each figure is its median
// and each ratio the median of the rounds' ratios.
func TestReadReportRounds(t *testing.T) {
	round := func(bare, key float64, bareP99, keyP99 time.Duration, errs int64) []ReadRun {
		return []ReadRun{
			{Key: "bare", Name: "bare net/http handler", Requests: 10, RequestsPerSecond: bare, P50: time.Millisecond, P99: bareP99},
			{Key: "apikey", Name: "GET .../token, API key", Requests: 10, RequestsPerSecond: key, P50: time.Millisecond, P99: keyP99, Errors: errs},
		}
	}
	rounds := [][]ReadRun{
		round(40000, 36000, 2*time.Millisecond, 3*time.Millisecond, 0), // 0.90, 1.5×
		round(50000, 40000, 4*time.Millisecond, 4*time.Millisecond, 1), // 0.80, 1.0×
		round(30000, 30000, 1*time.Millisecond, 2*time.Millisecond, 0), // 1.00, 2.0×
	}
	rep := &ReadReport{Connections: 64, Duration: 8 * time.Second, BodyBytes: 150, Driver: "wrk -t2", Runs: medianRuns(rounds), Rounds: rounds}
	if got := rep.Runs[0]; got.RequestsPerSecond != 40000 || got.P99 != 2*time.Millisecond || got.Requests != 30 {
		t.Errorf("bare medians: %+v", got)
	}
	if got := rep.Runs[1]; got.RequestsPerSecond != 36000 || got.P99 != 3*time.Millisecond || got.Errors != 1 {
		t.Errorf("API key medians: %+v", got)
	}
	if r, p := rep.ratio(1), rep.p99Ratio(1); r != 0.9 || p != 1.5 {
		t.Errorf("ratio %v, p99 ratio %v; want the rounds' medians 0.9 and 1.5", r, p)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	want := `bench read: 64 connections, 8s each, body 150 bytes; load from wrk -t2; 3 alternating rounds, medians
  bare net/http handler            40000 req/s  p50 1.0ms  p99 2.0ms  errors 0
  GET .../token, API key           36000 req/s  p50 1.0ms  p99 3.0ms  errors 1  ratio 0.90, p99 1.50×
  round 1                      bare 40000 req/s p99 2.0ms, apikey 0.90 (p99 1.50×)
  round 2                      bare 50000 req/s p99 4.0ms, apikey 0.80 (p99 1.00×)
  round 3                      bare 30000 req/s p99 1.0ms, apikey 1.00 (p99 2.00×)
`
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
	b, _ := json.Marshal(rep)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["driver"] != "wrk -t2" || m["rounds"] != 3.0 || m["apikey_ratio"] != 0.9 || m["apikey_p99_ratio"] != 1.5 {
		t.Errorf("JSON: %s", b)
	}
}

func TestReadConfigWrk(t *testing.T) {
	for _, tc := range []struct {
		cfg  ReadConfig
		want string
	}{
		{ReadConfig{Connections: 4, Duration: 1500 * time.Millisecond, Wrk: "wrk"}, "--duration must be whole seconds with --wrk"},
		{ReadConfig{Connections: 4, Duration: 500 * time.Millisecond, Wrk: "wrk"}, "--duration must be whole seconds with --wrk"},
		{ReadConfig{Connections: 4, Duration: time.Second, Rounds: 101}, "--rounds must be from 1 to 100"},
		{ReadConfig{Connections: 4, Duration: time.Second, Rounds: -1}, "--rounds must be from 1 to 100"},
		{ReadConfig{Connections: 4, Duration: time.Second, WrkThreads: -2}, "--wrk-threads must be from 1 to 256"},
	} {
		_, err := Read(t.Context(), tc.cfg, Wiring{}, t.Logf)
		wantConfigError(t, tc.want, err, tc.want)
	}
	_, err := Read(t.Context(), ReadConfig{Connections: 4, Duration: time.Second, Wrk: "/nonexistent/wrk"}, Wiring{}, t.Logf)
	wantConfigError(t, "a missing wrk", err, "--wrk /nonexistent/wrk")
	_, err = Read(t.Context(), ReadConfig{Connections: 4, Duration: time.Second, Wrk: "true"}, Wiring{}, t.Logf)
	wantConfigError(t, "a binary that is not wrk", err, "not the wrk benchmark")
}
