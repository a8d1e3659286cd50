package bench

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestRefreshReportJSON(t *testing.T) {
	rep := &RefreshReport{Credentials: 500, Database: "SQLite (/tmp/x/bench.db)", Lifetime: Duration(10 * time.Second),
		Window: Duration(20 * time.Second), ProviderLatency: Duration(20 * time.Millisecond), Refreshes: 1500,
		ProviderCalls: 1500, ProviderCallsPerToken: 1, RefreshedBeforeExpiryPct: 100, RefreshesPerSecond: 75}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	// The command printed a map before: its keys in sorted order.
	if sorted := sortedJSON(t, b); !bytes.Equal(b, sorted) {
		t.Errorf("keys not in sorted order:\n%s\n%s", b, sorted)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if len(m) != 19 || m["lifetime"] != "10s" || m["window"] != "20s" || m["provider_latency"] != "20ms" {
		t.Errorf("%d keys: %s", len(m), b)
	}
}

func TestRefreshRatios(t *testing.T) {
	for _, tc := range []struct {
		ok, late, expired, calls int
		onTime, perToken         float64
	}{
		{0, 0, 0, 0, 100, 0},       // nothing due
		{1500, 0, 0, 1500, 100, 1}, // every token replaced in time, one call each
		{90, 0, 10, 90, 90, 1},     // ten ran out unreplaced
		{100, 25, 0, 100, 75, 1},   // a quarter late
		{100, 0, 0, 150, 100, 1.5}, // wasted calls
		{0, 0, 4, 8, 0, 0},         // nothing replaced
	} {
		onTime, perToken := refreshRatios(tc.ok, tc.late, tc.expired, tc.calls)
		if onTime != tc.onTime || perToken != tc.perToken {
			t.Errorf("%+v: %v%%, %v per token", tc, onTime, perToken)
		}
	}
}

func TestRefreshReportText(t *testing.T) {
	rep := &RefreshReport{Credentials: 500, Database: "SQLite (/tmp/x/bench.db)", Lifetime: Duration(10 * time.Second),
		Window: Duration(20 * time.Second), ProviderLatency: Duration(20 * time.Millisecond), FirstFillSeconds: 0.8034,
		Refreshes: 1500, ProviderCalls: 1500, ProviderCallsPerToken: 1, RefreshedBeforeExpiryPct: 100, RefreshesPerSecond: 75,
		RefreshLatencyP50MS: 21.149, RefreshLatencyP99MS: 37.6, PeakRSSMiB: 59.3}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	want := `bench refresh on SQLite (/tmp/x/bench.db)
  credentials                     500, token lifetime 10s, provider latency 20ms
  first token for all             803ms
  measured                        20s
  refreshes                       1500 (75.0/s), 0 failed attempts, 0 fenced
  refreshed before expiry         100.00% (0 late, 0 expired unrefreshed)
  provider calls per token        1.000 (1500 calls for 1500 tokens replaced)
  calls per credential per 10s     1.50 of wall time (each token is replaced a third of its lifetime early)
  refresh latency                 p50 21.1ms, p99 37.6ms
  peak RSS                        59 MiB
`
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func readReport() *ReadReport {
	return &ReadReport{Connections: 16, Duration: 3 * time.Second, BodyBytes: 150, Runs: []ReadRun{
		{Key: "bare", Name: "bare net/http handler", RequestsPerSecond: 40000, P50: 200 * time.Microsecond, P99: 2 * time.Millisecond},
		{Key: "apikey", Name: "GET .../token, API key", RequestsPerSecond: 36000, P50: 250 * time.Microsecond, P99: 2 * time.Millisecond},
		{Key: "jwt", Name: "GET .../token, user JWT", RequestsPerSecond: 32000, P99: 3 * time.Millisecond, Errors: 2},
		{Key: "client", Name: "POST /oauth2/token, client", RequestsPerSecond: 30000, P99: 4 * time.Millisecond},
	}}
}

func TestReadReportJSON(t *testing.T) {
	b, err := json.Marshal(readReport())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"connections": 16.0, "duration": "3s", "body_bytes": 150.0, "driver": "built-in", "rounds": 1.0,
		"bare_rps": 40000.0, "bare_p99_ms": 2.0, "bare_errors": 0.0,
		"apikey_rps": 36000.0, "apikey_p99_ms": 2.0, "apikey_errors": 0.0, "apikey_ratio": 0.9, "apikey_p99_ratio": 1.0,
		"jwt_rps": 32000.0, "jwt_p99_ms": 3.0, "jwt_errors": 2.0, "jwt_ratio": 0.8, "jwt_p99_ratio": 1.5,
		"client_rps": 30000.0, "client_p99_ms": 4.0, "client_errors": 0.0, "client_ratio": 0.75, "client_p99_ratio": 2.0,
	}
	if len(m) != len(want) {
		t.Errorf("%d keys, want %d: %s", len(m), len(want), b)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
}

func TestReadReportText(t *testing.T) {
	var buf bytes.Buffer
	if err := readReport().WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	want := `bench read: 16 connections, 3s each, body 150 bytes
  bare net/http handler            40000 req/s  p50 0.2ms  p99 2.0ms  errors 0
  GET .../token, API key           36000 req/s  p50 0.2ms  p99 2.0ms  errors 0  ratio 0.90, p99 1.00×
  GET .../token, user JWT          32000 req/s  p50 0.0ms  p99 3.0ms  errors 2  ratio 0.80, p99 1.50×
  POST /oauth2/token, client       30000 req/s  p50 0.0ms  p99 4.0ms  errors 0  ratio 0.75, p99 2.00×
`
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func TestChaosReportJudge(t *testing.T) {
	term := func(f func(*ChaosReport)) *ChaosReport {
		r := &ChaosReport{Signal: "SIGTERM"}
		if f != nil {
			f(r)
		}
		return r
	}
	kill := func(f func(*ChaosReport)) *ChaosReport {
		r := term(f)
		r.Signal = "SIGKILL"
		return r
	}
	for _, tc := range []struct {
		name string
		rep  *ChaosReport
		want []string // substrings of the violations, in order
	}{
		{"clean TERM run", term(nil), nil},
		{"TERM: a reuse and a loss", term(func(r *ChaosReport) {
			r.ReuseDetections, r.CredentialsLost, r.CredentialsWithCuts, r.UncommittedAnswers = 1, 1, 1, 1
		}),
			[]string{"1 reuse detections outside the grace period", "1 credentials lost"}},
		{"KILL, strict: explained losses pass", kill(func(r *ChaosReport) { r.ReuseDetections, r.CredentialsLost, r.CredentialsWithCuts = 2, 2, 2 }), nil},
		{"KILL with a grace: losses fail", kill(func(r *ChaosReport) {
			r.Grace, r.CredentialsLost, r.CredentialsWithCuts = Duration(30*time.Second), 1, 1
		}),
			[]string{"1 credentials lost"}},
		{"KILL: more reuses than cuts", kill(func(r *ChaosReport) { r.ReuseDetections, r.UnexplainedReuses, r.CredentialsWithCuts = 3, 1, 2 }),
			[]string{"1 reuse detections more than credentials with a cut refresh"}},
		{"KILL: unexplained loss", kill(func(r *ChaosReport) { r.CredentialsLost, r.UnexplainedLosses = 1, 1 }),
			[]string{"1 credentials lost without any refresh cut"}},
		{"bad tokens for lost credentials only", kill(func(r *ChaosReport) { r.RevokedServed, r.BadServedLostCredentials = 3, 3 }), nil},
		{"an expired token served", term(func(r *ChaosReport) { r.ExpiredServed = 1 }),
			[]string{"1 expired, revoked or unknown tokens served for credentials not lost"}},
		{"exits and secrets", term(func(r *ChaosReport) { r.UnexpectedExits, r.SecretsInLogs = 1, 2 }),
			[]string{"1 replicas exited by themselves", "2 log lines hold a secret"}},
		{"database restarts ignored without them", term(func(r *ChaosReport) { r.DBNotResumed = 1 }), nil},
		{"database restarts", term(func(r *ChaosReport) {
			r.DBRestartEvery, r.DBRestartFailures, r.DBNotResumed = Duration(time.Minute), 1, 2
		}),
			[]string{"1 database restarts failed", "refreshes did not resume after 2 database restarts"}},
	} {
		tc.rep.judge()
		if len(tc.rep.Violations) != len(tc.want) || tc.rep.Pass != (len(tc.want) == 0) {
			t.Errorf("%s: violations %q (pass %v), want %d", tc.name, tc.rep.Violations, tc.rep.Pass, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(tc.rep.Violations[i], w) {
				t.Errorf("%s: violation %d is %q, want %q", tc.name, i, tc.rep.Violations[i], w)
			}
		}
		if err := tc.rep.Err(); (err == nil) != tc.rep.Pass {
			t.Errorf("%s: Err() = %v with pass %v", tc.name, err, tc.rep.Pass)
		}
	}
}

func TestChaosReportTextAndJSON(t *testing.T) {
	rep := &ChaosReport{Replicas: 3, Credentials: 200, Lifetime: Duration(5 * time.Second), Duration: Duration(time.Minute),
		KillEvery: Duration(10 * time.Second), Signal: "SIGTERM", RefreshLead: Duration(2500 * time.Millisecond),
		ProviderTimeout: Duration(2 * time.Second), Lease: Duration(7 * time.Second), Kills: 5, Reads: 20000, ReadsOK: 19900,
		FailedReadsKilledReplica: 90, FailedReadsOther: 10, FailedReadsOtherCauses: map[string]int{"timeout": 10},
		Statuses: map[string]int{"active": 200}, Notes: []string{"a note"}, ProviderCallsPerLifetime: 2.01}
	rep.judge()
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	if !strings.HasPrefix(text, "bench chaos: 3 replicas, 200 credentials, lifetime 5s, 1m0s, kill every 10s with SIGTERM, strict provider (no grace)\n") {
		t.Errorf("first line:\n%s", text)
	}
	// Labels and values in two aligned columns.
	for _, line := range [][2]string{
		{"refresh lead", "2.5s (lease 7s = provider timeout 2s + 5s; read leeway 500ms)"},
		{"other failed reads by cause", "timeout 10"},
		{"statuses", "active 200"},
		{"note", "a note"},
		{"verdict", "PASS"},
	} {
		re := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(line[0]) + ` {2,}` + regexp.QuoteMeta(line[1]) + `$`)
		if !re.MatchString(text) {
			t.Errorf("the table lacks %q:\n%s", line, text)
		}
	}
	col := strings.Index(text[strings.Index(text, "  kills"):], "5 (")
	if vcol := strings.Index(text[strings.Index(text, "  verdict"):], "PASS"); vcol != col {
		t.Errorf("values not aligned (%d, %d):\n%s", col, vcol, text)
	}
	if strings.Contains(text, "  database restarts") || strings.Contains(text, "count methods") {
		t.Errorf("lines for what did not happen:\n%s", text)
	}
	// The JSON line decodes back to the same report, durations as "5s".
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"lifetime":"5s","duration":"1m0s","kill_every":"10s","signal":"SIGTERM","grace":"0s"`)) {
		t.Errorf("JSON: %s", b)
	}
	var back ChaosReport
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	var buf2 bytes.Buffer
	if err := back.WriteText(&buf2); err != nil || buf2.String() != text {
		t.Errorf("the decoded report prints differently (%v):\n%s", err, buf2.String())
	}
}
