package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenkeeper/tokenkeeper/internal/bench"
	"github.com/tokenkeeper/tokenkeeper/internal/storetest"
)

// TestBenchChaosShort is the shortened chaos scenario of CI: three replicas
// on one PostgreSQL database, 200 credentials with 5 s rotating tokens, a
// strict provider, and a replica stopped with SIGTERM and restarted every
// 10 s for 60 s. Nothing may be lost: no reuse detection, no credential
// lost, no expired or revoked token served, and no refresh cut between the
// provider's answer and the commit.
func TestBenchChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: builds the binary and runs replicas for about 70 s")
	}
	db := storetest.PostgresURL(t)
	bin := buildBinary(t, t.TempDir())
	// 64 readers: with 5 s tokens a read often lands in the last second of
	// a token's advertised life and waits (up to about 1.5 s) for the planned
	// refresh rather than be handed a token with expires_in 0, so 16 readers
	// could not keep up the pace of 200 reads a second.
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := run(ctx, []string{"tokenkeeper", "bench", "chaos", "--binary", bin, "--database", db,
		"--replicas", "3", "--credentials", "200", "--lifetime", "5s", "--duration", "60s",
		"--kill-every", "10s", "--signal", "TERM", "--read-rate", "200", "--consumers", "64", "--json"},
		func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
	t.Logf("stderr:\n%s", stderr.String())
	if err != nil {
		t.Fatalf("bench chaos: %v\n%s", err, stdout.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("--json printed %d lines, want one:\n%s", len(lines), stdout.String())
	}
	var rep bench.ChaosReport
	if err := json.Unmarshal([]byte(lines[0]), &rep); err != nil {
		t.Fatalf("decode the JSON line: %v", err)
	}
	t.Logf("%d kills, %d reads (%d failed to a stopped replica, %d others), %.2f provider calls per credential per lifetime",
		rep.Kills, rep.Reads, rep.FailedReadsKilledReplica, rep.FailedReadsOther, rep.ProviderCallsPerLifetime)
	for _, c := range []struct {
		what      string
		got, want int
	}{
		{"reuse detections", rep.ReuseDetections, 0},
		{"grace reuses", rep.GraceReuses, 0},
		{"credentials lost", rep.CredentialsLost, 0},
		{"expired tokens served", rep.ExpiredServed, 0},
		{"revoked tokens served", rep.RevokedServed, 0},
		{"unknown tokens served", rep.UnknownServed, 0},
		{"answers never committed", rep.UncommittedAnswers, 0},
		{"answers never committed, by events", rep.UncommittedByEvents, 0},
		{"credentials where the two counts disagree", rep.MethodsDisagree, 0},
		{"unexpected replica exits", int(rep.UnexpectedExits), 0},
		{"secrets in logs", rep.SecretsInLogs, 0},
		{"max presentations of a refresh token", rep.MaxPresentations, 1},
		{"statuses other than active", 200 - rep.Statuses["active"], 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
	if !rep.Pass || len(rep.Violations) != 0 {
		t.Errorf("violations: %v", rep.Violations)
	}
	// The run did what it claims: kills, reads, refreshes.
	if rep.Kills < 4 { // five ticks in 60 s; a slow restart may skip one
		t.Errorf("only %d kills in 60 s at one every 10 s", rep.Kills)
	}
	if rep.ReadsOK < 3000 {
		t.Errorf("only %d successful reads", rep.ReadsOK)
	}
	if rep.ResourceCalls == 0 || rep.RejectedByResource != 0 {
		t.Errorf("%d /resource calls, %d rejected", rep.ResourceCalls, rep.RejectedByResource)
	}
	// With a 5 s lifetime and a 2.5 s lead, a credential is refreshed about
	// twice per lifetime; 60 s is 12 lifetimes.
	if rep.ProviderRefreshCalls < 200*12 {
		t.Errorf("only %d provider refreshes", rep.ProviderRefreshCalls)
	}
	// The schema is gone.
	m := regexp.MustCompile(`schema (tokenkeeper_chaos_[0-9a-f]+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatal("the progress output names no schema")
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", m[1]).Scan(&n); err != nil || n != 0 {
		t.Errorf("schema %s still exists (%d, %v)", m[1], n, err)
	}
}

func TestBenchChaosFlags(t *testing.T) {
	pg := "postgres://postgres@127.0.0.1:5432/test"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--database (or $TOKENKEEPER_BENCH_CHAOS_DATABASE) is required"},
		{[]string{"--database", "tk.db"}, "must be a PostgreSQL URL"},
		{[]string{"--database", pg, "--signal", "HUP"}, "--signal must be TERM or KILL"},
		{[]string{"--database", pg, "--replicas", "0"}, "--replicas"},
		{[]string{"--database", pg, "--lifetime", "1s"}, "--lifetime must be at least 2s"},
		{[]string{"--database", pg, "--kill-every", "10ms"}, "--kill-every"},
		{[]string{"--database", pg, "--refresh-lead", "30s"}, "--refresh-lead must be shorter"},
		{[]string{"--database", "postgres://db.example.com/x", "--db-restart-every", "1m"}, `names host "db.example.com"`},
		{[]string{"--database", pg, "extra"}, "no arguments"},
	} {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper", "bench", "chaos"}, tc.args...),
			func(string) string { return "" }, strings.NewReader(""), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 {
			t.Errorf("%v: err %v; want a usage error containing %q", tc.args, err, tc.want)
		}
	}
	// The database comes from the environment too: the command's own
	// variable, not the broker's.
	var out, errb syncBuffer
	err := run(context.Background(), []string{"tokenkeeper", "bench", "chaos", "--signal", "USR1"},
		func(k string) string { return map[string]string{"TOKENKEEPER_BENCH_CHAOS_DATABASE": pg}[k] }, strings.NewReader(""), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--signal") {
		t.Errorf("with $TOKENKEEPER_BENCH_CHAOS_DATABASE: %v", err)
	}
	err = run(context.Background(), []string{"tokenkeeper", "bench", "chaos", "--signal", "USR1"},
		func(k string) string { return map[string]string{"TOKENKEEPER_DATABASE": pg}[k] }, strings.NewReader(""), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--database (or $TOKENKEEPER_BENCH_CHAOS_DATABASE) is required") {
		t.Errorf("with the broker's $TOKENKEEPER_DATABASE: %v", err)
	}
	// --help documents the counting method.
	out.buf.Reset()
	err = run(context.Background(), []string{"tokenkeeper", "bench", "chaos", "--help"}, func(string) string { return "" }, nil, &out, &errb)
	if err != nil || !strings.Contains(out.String(), "never presented") || !strings.Contains(out.String(), "refresh lead") {
		t.Errorf("--help: %v\n%s", err, out.String())
	}
}
