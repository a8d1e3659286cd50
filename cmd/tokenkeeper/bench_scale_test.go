package main

import (
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/storetest"
)

// TestBenchScale runs bench scale at a tiny size through the command line,
// on a temporary SQLite file, and checks that its figures are measured.
func TestBenchScale(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 15 s")
	}
	// The control's bare handler runs as a separate program: this one.
	bin := buildBinary(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb syncBuffer
	err := run(ctx, []string{"tokenkeeper", "bench", "scale", "--credentials", "300", "--lifetime", "2m", "--window", "8s",
		"--quiet-window", "1s", "--latency", "1ms", "--read-connections", "4", "--read-rate", "100", "--binary", bin, "--json"},
		func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	if err != nil {
		t.Fatalf("bench scale: %v\n%s", err, errb.String())
	}
	var rep struct {
		Credentials              int     `json:"credentials"`
		Lifetime                 string  `json:"lifetime"`
		Refreshes                int     `json:"refreshes"`
		RefreshesPerReplica      []int   `json:"refreshes_per_replica"`
		RefreshedBeforeExpiryPct float64 `json:"refreshed_before_expiry_pct"`
		ProviderCalls            int     `json:"provider_calls"`
		ProviderCallsPerToken    float64 `json:"provider_calls_per_token"`
		LagP50                   float64 `json:"lag_p50_seconds"`
		LagP99                   float64 `json:"lag_p99_seconds"`
		PeakRSSMiB               float64 `json:"peak_rss_mib"`
		FirstToken               float64 `json:"start_to_first_token_seconds"`
		FirstRefresh             float64 `json:"start_to_first_refresh_seconds"`
		QuietP99                 float64 `json:"read_quiet_p99_ms"`
		LoadedP99                float64 `json:"read_loaded_p99_ms"`
		QuietErrors              int     `json:"read_quiet_errors"`
		LoadedErrors             int     `json:"read_loaded_errors"`
		DatabaseBytesEnd         int64   `json:"database_bytes_end"`
		ReadsFrom                string  `json:"reads_from"`
		WrittenBytes             int64   `json:"written_bytes"`
		WrittenPerRefresh        float64 `json:"written_bytes_per_refresh"`
		StealQuietPct            float64 `json:"host_steal_quiet_pct"`
		StealLoadedPct           float64 `json:"host_steal_loaded_pct"`
		LeaseCycle               int     `json:"lease_cycle_credentials"`
		HistoryCover             float64 `json:"history_cover_seconds"`
		Bare                     *struct {
			In             string  `json:"in"`
			BodyBytes      int     `json:"body_bytes"`
			QuietP99       float64 `json:"quiet_p99_ms"`
			LoadedP99      float64 `json:"loaded_p99_ms"`
			Errors         *int    `json:"errors"`
			StealQuietPct  float64 `json:"host_steal_quiet_pct"`
			StealLoadedPct float64 `json:"host_steal_loaded_pct"`
		} `json:"bare_control"`
	}
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("bench scale --json: %v\n%s", err, out.String())
	}
	// A 2 min token is replaced every 80 s: 300 credentials make about 4
	// refreshes a second, 30 in the window. (A period much longer than the
	// seeding, which took 39 s under -race on a busy machine: a shorter one
	// would see every credential due before the restart, refreshed in the
	// backlog, and none in the window.)
	if rep.Credentials != 300 || rep.Lifetime != "2m0s" || rep.Refreshes < 10 || len(rep.RefreshesPerReplica) != 1 ||
		rep.RefreshesPerReplica[0] != rep.Refreshes {
		t.Errorf("refreshes: %s", out.String())
	}
	if rep.ProviderCalls < 10 || rep.ProviderCallsPerToken < 0.9 || rep.ProviderCallsPerToken > 1.1 {
		t.Errorf("provider calls per token %.3f (%d calls)", rep.ProviderCallsPerToken, rep.ProviderCalls)
	}
	if rep.RefreshedBeforeExpiryPct < 50 || rep.LagP50 <= 0 || rep.LagP99 < rep.LagP50 || rep.LagP99 > 40 {
		t.Errorf("%.2f%% before expiry, lag p50 %.2fs p99 %.2fs (lead 40s)", rep.RefreshedBeforeExpiryPct, rep.LagP50, rep.LagP99)
	}
	if rep.PeakRSSMiB <= 0 || rep.FirstToken <= 0 || rep.FirstRefresh <= 0 || rep.QuietP99 <= 0 || rep.LoadedP99 <= 0 ||
		rep.QuietErrors != 0 || rep.LoadedErrors != 0 || rep.DatabaseBytesEnd <= 0 || rep.WrittenBytes <= 0 || rep.WrittenPerRefresh <= 0 ||
		rep.ReadsFrom != "this process" {
		t.Errorf("figures not measured: %s", out.String())
	}
	// SQLite: every credential (the 300 and the read set's 256) leased
	// and released once after the seeding, as a refresh does.
	if rep.LeaseCycle != 300+256 || !strings.Contains(errb.String(), "leased and released the 556 credentials, 64 at a time") {
		t.Errorf("lease cycle: %d credentials: %s\n%s", rep.LeaseCycle, out.String(), errb.String())
	}
	// The history covers the window and 5 minutes at least.
	if rep.HistoryCover < 308 {
		t.Errorf("history_cover_seconds = %.0f, under the window and 5 minutes", rep.HistoryCover)
	}
	// The control, on by default: the bare handler in a separate process,
	// answering as many bytes as a token read (a JSON token answer), read
	// without and beside the refresh load.
	if b := rep.Bare; b == nil || b.In != "a separate process" || b.BodyBytes < 50 || b.QuietP99 <= 0 || b.LoadedP99 <= 0 ||
		b.Errors == nil || *b.Errors != 0 || (runtime.GOOS == "linux" && (b.StealQuietPct < 0 || b.StealLoadedPct < 0)) {
		t.Errorf("bare handler control not measured: %s", out.String())
	}
	if !strings.Contains(errb.String(), "reading the bare handler for 1s beside the refresh load") {
		t.Errorf("progress: %s", errb.String())
	}
	// The host's steal while the reads ran: measured (this test runs on
	// Linux), a share of the CPU time.
	for _, pct := range []float64{rep.StealQuietPct, rep.StealLoadedPct} {
		if runtime.GOOS == "linux" && (pct < 0 || pct > 100) {
			t.Errorf("host steal %.2f%%: %s", pct, out.String())
		}
	}
	if !strings.Contains(errb.String(), "bench scale: 300 credentials, lifetime 2m0s (refreshed 40s before expiry)") {
		t.Errorf("progress: %s", errb.String())
	}
}

func TestBenchScaleFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--credentials", "0"}, "--credentials must be positive"},
		{[]string{"--lifetime", "2s"}, "--lifetime at least 3s"},
		{[]string{"--window", "0s"}, "--window and --concurrency positive"},
		{[]string{"--replicas", "3"}, "more than 1 only with --database postgres://"},
		{[]string{"--read-rate", "0"}, "--read-rate and --quiet-window positive"},
		{[]string{"--read-connections", "5000"}, "--read-connections must be from 1 to 4096"},
	} {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper", "bench", "scale"}, tc.args...),
			func(string) string { return "" }, strings.NewReader(""), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 {
			t.Errorf("%v: err %v; want a usage error containing %q", tc.args, err, tc.want)
		}
	}
}

// TestBenchScalePostgresReplicas runs bench scale on PostgreSQL with two
// replicas: the seeded schema is vacuumed and analyzed before the window,
// and the refreshes are spread over both.
func TestBenchScalePostgresReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 15 s")
	}
	db := storetest.PostgresURL(t)
	bin := buildBinary(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb syncBuffer
	err := run(ctx, []string{"tokenkeeper", "bench", "scale", "--credentials", "600", "--lifetime", "2m", "--window", "8s",
		"--quiet-window", "1s", "--latency", "1ms", "--read-connections", "4", "--read-rate", "100", "--replicas", "2",
		"--database", db, "--reader-process", "--binary", bin, "--bare-control=false", "--json"},
		func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	if err != nil {
		t.Fatalf("bench scale: %v\n%s", err, errb.String())
	}
	var rep struct {
		Refreshes           int              `json:"refreshes"`
		RefreshesPerReplica []int            `json:"refreshes_per_replica"`
		CallsPerToken       float64          `json:"provider_calls_per_token"`
		DatabaseBytesEnd    int64            `json:"database_bytes_end"`
		ReadsFrom           string           `json:"reads_from"`
		QuietP99            float64          `json:"read_quiet_p99_ms"`
		LoadedP99           float64          `json:"read_loaded_p99_ms"`
		LoadedRPS           float64          `json:"read_loaded_rps"`
		LoadedErrors        int              `json:"read_loaded_errors"`
		Bare                *json.RawMessage `json:"bare_control"`
		CycleCredentials    int              `json:"cycle_credentials"`
	}
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("bench scale --json: %v\n%s", err, out.String())
	}
	// The vacuum cycle before the window: the broker's threshold (2000
	// dead rows and more) is over the 600 seeded credentials and the read
	// set's, so every one got a new row version before the vacuum.
	if rep.CycleCredentials < 600 || rep.CycleCredentials > 2000 {
		t.Errorf("cycle_credentials = %d, want every credential (600 seeded and the read set): %s", rep.CycleCredentials, out.String())
	}
	// --bare-control=false: no control, and none of its keys.
	if rep.Bare != nil || strings.Contains(out.String(), `"bare_`) || strings.Contains(errb.String(), "bare handler") {
		t.Errorf("the control ran with --bare-control=false: %s\n%s", out.String(), errb.String())
	}
	if len(rep.RefreshesPerReplica) != 2 || rep.RefreshesPerReplica[0]+rep.RefreshesPerReplica[1] != rep.Refreshes ||
		rep.Refreshes < 20 || rep.CallsPerToken < 0.9 || rep.CallsPerToken > 1.1 || rep.DatabaseBytesEnd <= 0 {
		t.Errorf("report: %s", out.String())
	}
	// The reads ran in the child process (bench read-load) and came back.
	if rep.ReadsFrom != "a separate process" || rep.QuietP99 <= 0 || rep.LoadedP99 <= 0 || rep.LoadedRPS < 50 || rep.LoadedErrors != 0 {
		t.Errorf("reads from a separate process: %s", out.String())
	}
	if !strings.Contains(errb.String(), "vacuumed and analyzed in ") {
		t.Errorf("the seeded schema was not vacuumed before the window: %s", errb.String())
	}
}

// TestBenchReadLoadInput: the hidden command behind --reader-process
// refuses a load it cannot run, with a usage error, before any request.
func TestBenchReadLoadInput(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "standard input is not a read load"},
		{"not json", "standard input is not a read load"},
		{`{"base":"http://127.0.0.1:1","surprise":1}`, "unknown field"},
		{`{"base":"http://127.0.0.1:1","key":"k","targets":["/x"],"connections":0,"rate":10,"duration":"1s"}`, "positive connections"},
		{`{"key":"k","targets":["/x"],"connections":1,"rate":10,"duration":"1s"}`, "needs a base URL"},
	} {
		var out, errb syncBuffer
		err := run(context.Background(), []string{"tokenkeeper", "bench", "read-load"}, func(string) string { return "" },
			strings.NewReader(tc.in), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 {
			t.Errorf("%q: err %v; want a usage error containing %q", tc.in, err, tc.want)
		}
	}
	// Not in the help: bench scale runs it.
	var out, errb syncBuffer
	if err := run(context.Background(), []string{"tokenkeeper", "bench", "--help"}, func(string) string { return "" }, nil, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "read-load") || !strings.Contains(out.String(), "scale") {
		t.Errorf("bench --help:\n%s", out.String())
	}
}
