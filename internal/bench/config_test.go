package bench

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// wantConfigError checks that err is a *ConfigError whose message holds want.
func wantConfigError(t *testing.T, what string, err error, want string) {
	t.Helper()
	ce, ok := errors.AsType[*ConfigError](err)
	if !ok || !strings.Contains(ce.Error(), want) {
		t.Errorf("%s: error %v; want a ConfigError containing %q", what, err, want)
	}
}

func TestRefreshConfigValidate(t *testing.T) {
	good := RefreshConfig{Credentials: 10, Lifetime: 10 * time.Second, Latency: time.Millisecond, Concurrency: 4}
	for _, tc := range []struct {
		name   string
		change func(*RefreshConfig)
		want   string
	}{
		{"no credentials", func(c *RefreshConfig) { c.Credentials = 0 }, "--credentials must be positive"},
		{"short lifetime", func(c *RefreshConfig) { c.Lifetime = time.Second }, "--lifetime at least 2s"},
		{"negative latency", func(c *RefreshConfig) { c.Latency = -time.Millisecond }, "--credentials must be positive"},
		{"no concurrency", func(c *RefreshConfig) { c.Concurrency = 0 }, "--concurrency positive"},
		{"negative window", func(c *RefreshConfig) { c.Window = -time.Second }, "--window must not be negative"},
	} {
		cfg := good
		tc.change(&cfg)
		wantConfigError(t, tc.name, cfg.validate(), tc.want)
	}
	cfg := good
	if err := cfg.validate(); err != nil || cfg.Window != 2*cfg.Lifetime {
		t.Errorf("default window: %s, %v; want two lifetimes", cfg.Window, err)
	}
	cfg = good
	cfg.Window = 3 * time.Second
	if err := cfg.validate(); err != nil || cfg.Window != 3*time.Second {
		t.Errorf("explicit window: %s, %v", cfg.Window, err)
	}
}

func TestReadConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg ReadConfig
		ok  bool
	}{
		{ReadConfig{Connections: 1, Duration: time.Second}, true},
		{ReadConfig{Connections: 4096, Duration: time.Second}, true},
		{ReadConfig{Connections: 0, Duration: time.Second}, false},
		{ReadConfig{Connections: 4097, Duration: time.Second}, false},
		{ReadConfig{Connections: 64, Duration: 0}, false},
		{ReadConfig{Connections: 64, Duration: -time.Second}, false},
	} {
		err := tc.cfg.validate()
		if tc.ok {
			if err != nil {
				t.Errorf("%+v: %v", tc.cfg, err)
			}
			continue
		}
		wantConfigError(t, "read", err, "--connections must be from 1 to 4096 and --duration positive")
	}
}

func TestChaosConfigValidate(t *testing.T) {
	good := ChaosConfig{Database: "postgres://postgres@127.0.0.1:5432/test", Binary: "/usr/bin/tokenkeeper", Replicas: 3,
		Credentials: 200, Lifetime: 5 * time.Second, Duration: time.Minute, KillEvery: 10 * time.Second, Signal: "TERM",
		Latency: 20 * time.Millisecond, ProviderTimeout: 2 * time.Second, Consumers: 16, ReadRate: 400, ResourceEvery: 10}
	for _, tc := range []struct {
		name   string
		change func(*ChaosConfig)
		want   string
	}{
		{"no database", func(c *ChaosConfig) { c.Database = "" }, "--database (or $TOKENKEEPER_DATABASE) is required"},
		{"SQLite", func(c *ChaosConfig) { c.Database = "tk.db" }, "must be a PostgreSQL URL"},
		{"no binary", func(c *ChaosConfig) { c.Binary = "" }, "--binary"},
		{"no replicas", func(c *ChaosConfig) { c.Replicas = 0 }, "--replicas must be from 1 to 32"},
		{"too many replicas", func(c *ChaosConfig) { c.Replicas = 33 }, "--replicas must be from 1 to 32"},
		{"no credentials", func(c *ChaosConfig) { c.Credentials = 0 }, "--credentials must be from 1 to 100000"},
		{"short lifetime", func(c *ChaosConfig) { c.Lifetime = time.Second }, "--lifetime must be at least 2s"},
		{"no duration", func(c *ChaosConfig) { c.Duration = 0 }, "--duration must be positive"},
		{"kills too often", func(c *ChaosConfig) { c.KillEvery = 10 * time.Millisecond }, "--kill-every must be 0"},
		{"negative kills", func(c *ChaosConfig) { c.KillEvery = -time.Second }, "--kill-every must be 0"},
		{"negative grace", func(c *ChaosConfig) { c.Grace = -time.Second }, "--grace must not be negative"},
		{"restarts too often", func(c *ChaosConfig) { c.DBRestartEvery = time.Second }, "--db-restart-every must be 0"},
		{"latency over timeout", func(c *ChaosConfig) { c.Latency = 3 * time.Second }, "--provider-timeout must exceed it"},
		{"lead over lifetime", func(c *ChaosConfig) { c.RefreshLead = 5 * time.Second }, "--refresh-lead must be shorter"},
		{"no consumers", func(c *ChaosConfig) { c.Consumers = 0 }, "--consumers must be from 1 to 1024"},
		{"read rate", func(c *ChaosConfig) { c.ReadRate = 0 }, "--read-rate must be from 1 to 100000"},
		{"resource every", func(c *ChaosConfig) { c.ResourceEvery = -1 }, "--resource-every must not be negative"},
		{"signal", func(c *ChaosConfig) { c.Signal = "HUP" }, `--signal must be TERM or KILL, got "HUP"`},
		{"bad URL", func(c *ChaosConfig) { c.Database = "postgres://h:bad port/x" }, "--database is not a valid URL"},
		{"remote restart", func(c *ChaosConfig) {
			c.Database, c.DBRestartEvery, c.DBRestartCommand = "postgres://db.example.com/x", time.Minute, []string{"true"}
		}, `names host "db.example.com"`},
	} {
		cfg := good
		tc.change(&cfg)
		wantConfigError(t, tc.name, cfg.validate(), tc.want)
	}
	for _, sig := range []string{"TERM", "term", "SIGTERM", "sigterm", "KILL", "SigKill"} {
		cfg := good
		cfg.Signal = sig
		if err := cfg.validate(); err != nil || !strings.HasSuffix(cfg.signalName, strings.ToUpper(sig[len(sig)-4:])) {
			t.Errorf("signal %q: %s, %v", sig, cfg.signalName, err)
		}
	}
	// A restart command given is kept; the database on loopback or a socket.
	for _, db := range []string{"postgres://127.0.0.1/x", "postgres://localhost/x", "postgres://[::1]:5432/x", "postgres:///x?host=/run/postgresql"} {
		cfg := good
		cfg.Database, cfg.DBRestartEvery, cfg.DBRestartCommand = db, time.Minute, []string{"pg_ctl", "restart"}
		if err := cfg.validate(); err != nil || len(cfg.DBRestartCommand) != 2 {
			t.Errorf("%s: %v, %v", db, cfg.DBRestartCommand, err)
		}
	}
}

func TestChaosConfigLead(t *testing.T) {
	for _, tc := range []struct {
		lifetime, providerTimeout, lead time.Duration
		wantLead, wantLease             time.Duration
		wantCovers                      bool
	}{
		// lease 7s + leeway 2s + 2s
		{20 * time.Second, 2 * time.Second, 0, 11 * time.Second, 7 * time.Second, true},
		// lease 8s + leeway 2s + 2s
		{20 * time.Second, 3 * time.Second, 0, 12 * time.Second, 8 * time.Second, true},
		// lease 7s + leeway 5s (capped) + 2s
		{2 * time.Minute, 2 * time.Second, 0, 14 * time.Second, 7 * time.Second, true},
		// too short a lifetime: half of it, and a kill may let tokens run out
		{5 * time.Second, 2 * time.Second, 0, 2500 * time.Millisecond, 7 * time.Second, false},
		// an explicit lead is kept
		{20 * time.Second, 2 * time.Second, 15 * time.Second, 15 * time.Second, 7 * time.Second, true},
		{20 * time.Second, 2 * time.Second, 5 * time.Second, 5 * time.Second, 7 * time.Second, false},
	} {
		cfg := ChaosConfig{Database: "postgres://h/db", Binary: "tokenkeeper", Replicas: 3, Credentials: 10, Lifetime: tc.lifetime,
			Duration: time.Minute, ProviderTimeout: tc.providerTimeout, RefreshLead: tc.lead, Consumers: 1, ReadRate: 1, Signal: "KILL"}
		if err := cfg.validate(); err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if cfg.RefreshLead != tc.wantLead || cfg.lease != tc.wantLease || cfg.leadCovers != tc.wantCovers || cfg.signalName != "SIGKILL" {
			t.Errorf("lifetime %s, timeout %s, lead %s: got lead %s lease %s covers %v", tc.lifetime, tc.providerTimeout, tc.lead,
				cfg.RefreshLead, cfg.lease, cfg.leadCovers)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"},
		{"postgres://tk:s3cret@db:5432/tk", "postgres://tk:****@db:5432/tk"},
		{"postgresql://tk:p%40ss@db/tk?sslmode=require", "postgresql://tk:****@db/tk?sslmode=require"},
		{"postgres://tk:pw@db/x?application_name=a@b", "postgres://tk:****@db/x?application_name=a@b"},
		{"postgres://db/x?application_name=a:b@c", "postgres://db/x?application_name=a:b@c"},
		{"tokenkeeper.db", "tokenkeeper.db"},
	} {
		if got := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestWithSearchPath(t *testing.T) {
	got, err := withSearchPath("postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "tokenkeeper_chaos_0a1b2c3d")
	if err != nil || got != "postgres://postgres@127.0.0.1:5432/test?search_path=tokenkeeper_chaos_0a1b2c3d&sslmode=disable" {
		t.Errorf("%q, %v", got, err)
	}
	if name := newSchemaName("tokenkeeper_bench_"); len(name) != len("tokenkeeper_bench_")+8 || name == newSchemaName("tokenkeeper_bench_") {
		t.Errorf("schema name %q", name)
	}
}

func TestWiringNeed(t *testing.T) {
	w := Wiring{EventRetention: 1000}
	if err := w.need("EventRetention"); err != nil {
		t.Errorf("EventRetention set: %v", err)
	}
	for _, f := range []string{"OpenStore", "StartBroker", "CreateAdminKey"} {
		if err := w.need("EventRetention", f); err == nil || !strings.Contains(err.Error(), "Wiring."+f+" is not set") {
			t.Errorf("%s missing: %v", f, err)
		}
	}
	if err := (Wiring{}).need("EventRetention"); err == nil {
		t.Error("no event retention: no error")
	}
}
