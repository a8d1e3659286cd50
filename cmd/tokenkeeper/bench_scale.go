package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/bench"
)

// runReadLoad runs l in a child process, bin bench read-load, which reads
// it (API key included) on its standard input, never its command line, and
// prints what it measured.
func runReadLoad(ctx context.Context, bin string, l bench.ReadLoad) (bench.ReadRun, error) {
	in, err := json.Marshal(l)
	if err != nil {
		return bench.ReadRun{}, err
	}
	cmd := exec.CommandContext(ctx, bin, "bench", "read-load")
	cmd.Stdin = bytes.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return bench.ReadRun{}, fmt.Errorf("%s bench read-load: %w: %s", bin, err, strings.TrimSpace(errb.String()))
	}
	var run bench.ReadRun
	if err := json.Unmarshal(out.Bytes(), &run); err != nil {
		return bench.ReadRun{}, fmt.Errorf("%s bench read-load printed no report: %w", bin, err)
	}
	return run, nil
}

// cmdBenchReadLoad is the hidden command behind runReadLoad.
func (e *env) cmdBenchReadLoad(c *command) runFunc {
	c.commandEnv()
	c.describe("tokenkeeper bench read-load < LOAD.json",
		`Runs the token reads of bench scale, described as JSON on standard input
(base URL, API key, read targets, connections, rate, duration), in this
process, and prints what it measured as JSON. bench scale runs it; it is not
meant to be run by hand.`)
	return func(args []string) error {
		if _, err := c.args(0, "no arguments"); err != nil {
			return err
		}
		var l bench.ReadLoad
		dec := json.NewDecoder(e.stdin)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return usagef("bench read-load: standard input is not a read load: %v", err)
		}
		if l.Connections < 1 || l.Rate < 1 || len(l.Targets) == 0 || l.Duration <= 0 || l.Base == "" {
			return usagef("bench read-load: the load needs a base URL, targets, and positive connections, rate and duration")
		}
		return printJSON(e.stdout, l.Run(e.ctx))
	}
}

func (e *env) cmdBenchScale(c *command) runFunc {
	c.describe("tokenkeeper bench scale [--credentials 1000000] [--lifetime 1h] [--window 10m] [--database PATH_OR_URL] [--replicas N]",
		`Measures the broker at scale in its steady state without waiting hours:
seeds --credentials credentials of one provider (the test provider, client
credentials, --latency per call) directly in the store, each with a sealed
token, their refresh times spread evenly over one refresh period (lifetime
less the lead, a third of it, at most 5 minutes), each leased and
released once on SQLite (as a refresh does: the pages then hold the slack
of the steady state), and the refresh events of the last 12 hours of the
credentials the window touches, until the window's end as estimated (a
window that runs past them is flagged: its growth is overstated; on
PostgreSQL, with the vacuum cycle before the window run, so that the tables
hold the free space of the steady state), then restarts the broker on the full
database and measures for --window: the share refreshed before
expiry, refreshes per second (per replica with --replicas), provider calls
per token, refresh lag before expiry (p1, p50, p99), peak RSS, time from
start to the first token served and to the first refresh, token read
latency p50/p99 under the refresh load and, measured before the seeding,
without it (from this process, or with --reader-process from a separate
one), each with the share of CPU time the host stole meanwhile (on a
virtual machine, a stolen slice delays reads too), and, as a control, the
same reads of a bare net/http handler in a separate process without and
beside the refresh load (--bare-control=false leaves it out); database
growth per hour and per day, and bytes written to disk per refresh
(SQLite, from /proc/self/io). --database postgres://... runs on a fresh
schema of that database, dropped afterwards; the default is a temporary
SQLite file. Every figure and setting is printed; --json for a machine.`)
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
	c.fs.BoolVar(&cfg.BareControl, "bare-control", true, "also read a bare net/http handler in a separate process the same way, without and beside the refresh load: what the machine does to any server's reads under that load")
	readerProcess := c.fs.Bool("reader-process", false, "drive the token reads from a separate process, as a service's would, instead of from this one (whose scheduler they share with the refreshes)")
	binary := c.fs.String("binary", "", "with --reader-process or --bare-control: the tokenkeeper binary to run them with (default: this one)")
	c.commandEnv() // a tool: its variables must not be the broker's
	c.envless("binary")
	return func(args []string) error {
		closeProfile, err := openProfile(*cpuProfile, &cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer closeProfile()
		w := e.benchWiring()
		if *readerProcess || cfg.BareControl {
			bin, err := binaryOrThis(*binary)
			if err != nil {
				return err
			}
			if *readerProcess {
				w.RunReads = func(ctx context.Context, l bench.ReadLoad) (bench.ReadRun, error) { return runReadLoad(ctx, bin, l) }
			}
			w.StartBare = func(ctx context.Context, body []byte) (string, func(), error) { return startBare(ctx, bin, body) }
		}
		rep, err := bench.Scale(e.ctx, cfg, w, e.benchLogf)
		if err != nil {
			return benchError(err)
		}
		if *asJSON {
			return printJSON(e.stdout, rep)
		}
		return rep.WriteText(e.stdout)
	}
}
