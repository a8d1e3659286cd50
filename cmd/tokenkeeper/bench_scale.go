package main

import (
	"os"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/bench"
)

func (e *env) cmdBenchScale(c *command) runFunc {
	c.describe("tokenkeeper bench scale [--credentials 1000000] [--lifetime 1h] [--window 10m] [--database PATH_OR_URL] [--replicas N]",
		`Measures the broker at scale in its steady state without waiting hours:
seeds --credentials credentials of one provider (the test provider, client
credentials, --latency per call) directly in the store, each with a sealed
token, their refresh times spread evenly over one refresh period (lifetime
less the lead, a third of it, at most 5 minutes), then restarts the broker
on the full database and measures for --window: the share refreshed before
expiry, refreshes per second (per replica with --replicas), provider calls
per token, refresh lag before expiry (p1, p50, p99), peak RSS, time from
start to the first token served and to the first refresh, token read
latency p50/p99 under the refresh load and, measured before the seeding,
without it; database growth per hour and per day, and bytes written to disk
per refresh (SQLite, from /proc/self/io). --database postgres://... runs on
a fresh schema of that database, dropped afterwards; the default is a
temporary SQLite file. Every figure and setting is printed; --json for a
machine.`)
	var cfg bench.ScaleConfig
	c.fs.IntVar(&cfg.Credentials, "credentials", 1_000_000, "number of credentials seeded")
	c.fs.DurationVar(&cfg.Lifetime, "lifetime", time.Hour, "access token lifetime at the test provider")
	c.fs.DurationVar(&cfg.Window, "window", 10*time.Minute, "measuring time")
	c.fs.DurationVar(&cfg.Latency, "latency", 20*time.Millisecond, "test provider latency per token request")
	c.fs.StringVar(&cfg.Database, "database", "", "postgres:// URL (default: a temporary SQLite file)")
	c.fs.IntVar(&cfg.Concurrency, "concurrency", 64, "refreshes in flight at most, per replica")
	c.fs.IntVar(&cfg.Replicas, "replicas", 1, "brokers in this process sharing the credentials (PostgreSQL only for more than 1)")
	c.fs.IntVar(&cfg.ReadConnections, "read-connections", 64, "keep-alive connections reading tokens")
	c.fs.IntVar(&cfg.ReadRate, "read-rate", 1000, "token reads per second, over all connections")
	c.fs.DurationVar(&cfg.QuietWindow, "quiet-window", 15*time.Second, "reading time without refresh load, before seeding")
	asJSON := c.fs.Bool("json", false, "print JSON")
	cpuProfile := c.fs.String("cpu-profile", "", "write a CPU profile of the window (go tool pprof) to this file")
	c.commandEnv() // a tool: its variables must not be the broker's
	return func(args []string) error {
		if *cpuProfile != "" {
			f, err := os.Create(*cpuProfile)
			if err != nil {
				return usagef("--cpu-profile: %v", err)
			}
			defer f.Close()
			cfg.CPUProfile = f
		}
		rep, err := bench.Scale(e.ctx, cfg, e.benchWiring(), e.benchLogf)
		if err != nil {
			return benchError(err)
		}
		if *asJSON {
			return printJSON(e.stdout, rep)
		}
		return rep.WriteText(e.stdout)
	}
}
