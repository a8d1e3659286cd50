package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/bench"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
)

// benchWiring is how the harness opens stores and starts brokers: the
// same way serve does, with a given master key and no logs.
func (e *env) benchWiring() bench.Wiring { return e.benchWiringObs(observabilityOptions{}) }

// benchWiringObs is benchWiring with brokers that have obs (bench read
// --metrics).
func (e *env) benchWiringObs(obs observabilityOptions) bench.Wiring {
	return bench.Wiring{
		OpenStore: func(ctx context.Context, database string, masterKey []byte) (tokenkeeper.Store, error) {
			benv := *e
			benv.ctx, benv.stderr = ctx, io.Discard
			benv.getenv = func(k string) string {
				if k == "TOKENKEEPER_MASTER_KEY" {
					return seal.EncodeMasterKey(masterKey)
				}
				return ""
			}
			return benv.openStore(&storeOptions{database: database}, discardLogger(), true)
		},
		StartBroker: func(ctx context.Context, store tokenkeeper.Store, cfg bench.BrokerConfig) (*bench.Broker, error) {
			b, err := startBroker(ctx, store, brokerOptions{addr: "127.0.0.1:0", concurrency: cfg.Concurrency,
				providerTimeout: cfg.ProviderTimeout, defaultLifetime: cfg.DefaultLifetime, shutdownTimeout: cfg.ShutdownTimeout, obs: obs},
				discardLogger(), cfg.OnAttempt)
			if err != nil {
				return nil, err
			}
			return &bench.Broker{URL: b.URL, Stop: func() error { b.Stop(); return b.Wait() }}, nil
		},
		CreateAdminKey: ensureAdminKey,
		EventRetention: sqlstore.DefaultRefreshEventCount,
	}
}

// benchLogf prints the harness's progress lines on stderr.
func (e *env) benchLogf(format string, args ...any) { fmt.Fprintf(e.stderr, format+"\n", args...) }

// benchError turns the harness's configuration errors into usage errors.
func benchError(err error) error {
	if ce, ok := errors.AsType[*bench.ConfigError](err); ok {
		return usagef("%s", ce.Error())
	}
	return err
}

func (e *env) cmdBenchRefresh(c *command) runFunc {
	c.commandEnv() // a tool: its variables must not be the broker's
	c.describe("tokenkeeper bench refresh [--credentials 10000] [--lifetime 120s] [--database PATH_OR_URL]",
		`Measures the refresher: runs the test provider (with latency) and the
broker in one process, creates N credentials, waits until each has its first
token, then measures for --window (default two lifetimes): the share of
refreshes that came before the token they replaced expired, refreshes per
second, provider calls per token replaced (1.00 means no wasted call), refresh
latency p50 and p99, and peak RSS. --database postgres://... runs on a fresh
schema of that database, dropped afterwards; the default is a temporary SQLite file.`)
	var cfg bench.RefreshConfig
	c.fs.IntVar(&cfg.Credentials, "credentials", 10000, "number of credentials")
	c.fs.DurationVar(&cfg.Lifetime, "lifetime", 120*time.Second, "access token lifetime at the test provider")
	c.fs.DurationVar(&cfg.Window, "window", 0, "measuring time after the first tokens (default 2 × lifetime)")
	c.fs.DurationVar(&cfg.Latency, "latency", 20*time.Millisecond, "test provider latency per token request")
	c.fs.StringVar(&cfg.Database, "database", "", "postgres:// URL (default: a temporary SQLite file)")
	c.fs.IntVar(&cfg.Concurrency, "concurrency", 64, "refreshes in flight at most")
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		rep, err := bench.Refresh(e.ctx, cfg, e.benchWiring(), e.benchLogf)
		if err != nil {
			return benchError(err)
		}
		if *asJSON {
			return printJSON(e.stdout, rep)
		}
		return rep.WriteText(e.stdout)
	}
}

func (e *env) cmdBenchRead(c *command) runFunc {
	c.commandEnv() // a tool: its variables must not be the broker's
	c.describe("tokenkeeper bench read [--connections 64] [--duration 10s] [--rounds N] [--wrk wrk] [--bare-process]",
		`Measures the token read path: drives GET /v1/credentials/NAME/token over
loopback keep-alive connections against a broker in this process (SQLite in
a temporary directory, or a fresh schema of --database postgres://...), as an
API key, as a user's access token (JWT), and as a service client at
/oauth2/token; and in the same run a bare net/http handler answering a body
of the same size. Reports each request rate, its ratio to the bare handler's
and the p99 latencies, and each p99's ratio to the bare handler's. Tokens are
served from memory, so the database only matters for authentication misses
and the audit writer.

The built-in driver works like wrk: a fixed number of keep-alive connections,
one request in flight on each. --wrk wrk drives the load with wrk itself
(Debian: apt-get install wrk; each request's headers are set by a Lua script
in a private temporary directory, never on its command line). --rounds N runs
the bare handler and the three callers in turn N times and reports the
medians: --wrk wrk --rounds 3 --duration 8s is wrk -t2 -c64 -d8s, three
alternating rounds. The bare handler runs in this process, which has the
broker's scheduler and collector settings; --bare-process runs it as a
separate program with Go's defaults, as a bare handler someone wrote would.`)
	var cfg bench.ReadConfig
	c.fs.IntVar(&cfg.Connections, "connections", 64, "concurrent keep-alive connections")
	c.fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "duration of each run (four runs a round: the bare handler, then the three callers)")
	c.fs.StringVar(&cfg.Database, "database", "", "postgres:// URL (default: a temporary SQLite file)")
	c.fs.IntVar(&cfg.Rounds, "rounds", 1, "alternating rounds of the four runs; the report gives each figure's median")
	c.fs.StringVar(&cfg.Wrk, "wrk", "", "drive the load with wrk, this binary (a path or a name on PATH), instead of the built-in driver")
	c.fs.IntVar(&cfg.WrkThreads, "wrk-threads", 2, "with --wrk: wrk's threads (-t)")
	cpuProfile := c.fs.String("cpu-profile", "", "write a CPU profile of the first round's runs of the broker (go tool pprof) to this file")
	bareProcess := c.fs.Bool("bare-process", false, "run the bare handler as a separate program with Go's default settings, instead of in this process (whose scheduler and collector settings are the broker's)")
	binary := c.fs.String("binary", "", "with --bare-process: the tokenkeeper binary to run it with (default: this one)")
	c.envless("binary")
	withMetrics := c.fs.Bool("metrics", false, "run the broker with /metrics on (as serve --metrics-addr does), to measure what metrics cost")
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		// The library reads 0 as the default; on the command line it is a mistake.
		if cfg.Rounds < 1 {
			return usagef("--rounds must be from 1 to 100")
		}
		if cfg.WrkThreads < 1 {
			return usagef("--wrk-threads must be from 1 to 256")
		}
		closeProfile, err := openProfile(*cpuProfile, &cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer closeProfile()
		var obs observabilityOptions
		if *withMetrics {
			obs.metricsAddr, obs.metricsPoll = "127.0.0.1:0", 15*time.Second
		}
		w := e.benchWiringObs(obs)
		if *bareProcess {
			bin, err := binaryOrThis(*binary)
			if err != nil {
				return err
			}
			w.StartBare = func(ctx context.Context, body []byte) (string, func(), error) { return startBare(ctx, bin, body) }
		}
		rep, err := bench.Read(e.ctx, cfg, w, e.benchLogf)
		if err != nil {
			return benchError(err)
		}
		if *asJSON {
			return printJSON(e.stdout, rep)
		}
		return rep.WriteText(e.stdout)
	}
}

// openProfile creates the file of a --cpu-profile flag, unless path is
// empty, and points *w at it; call close when the bench is done.
func openProfile(path string, w *io.Writer) (close func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, usagef("--cpu-profile: %v", err)
	}
	*w = f
	return func() { _ = f.Close() }, nil
}

// binaryOrThis is bin, a --binary flag, or this binary's path if it is
// empty: the tokenkeeper a bench runs its child processes with.
func binaryOrThis(bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	bin, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this binary: %w", err)
	}
	return bin, nil
}

// bareInput is what bench read sends the hidden bench bare-handler on its
// standard input: the body to answer.
type bareInput struct {
	Body []byte `json:"body"`
}

// startBare runs bench read's bare handler in a child process, bin bench
// bare-handler, with Go's default settings: it prints its URL, and ends
// when its standard input is closed (stop) or it is killed.
func startBare(ctx context.Context, bin string, body []byte) (string, func(), error) {
	in, err := json.Marshal(bareInput{Body: body})
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "bench", "bare-handler")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("%s bench bare-handler: %w", bin, err)
	}
	stop := func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	if _, err := stdin.Write(append(in, '\n')); err != nil {
		stop()
		return "", nil, fmt.Errorf("%s bench bare-handler: %w", bin, err)
	}
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		s.Scan()
		line <- s.Text()
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case url := <-line:
		if !strings.HasPrefix(url, "http://127.0.0.1:") {
			stop()
			return "", nil, fmt.Errorf("%s bench bare-handler printed no URL: %s", bin, strings.TrimSpace(errb.String()))
		}
		return url, stop, nil
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	stop()
	return "", nil, fmt.Errorf("%s bench bare-handler did not start", bin)
}

// cmdBenchBareHandler is the hidden command behind startBare.
func (e *env) cmdBenchBareHandler(c *command) runFunc {
	c.commandEnv()
	c.describe("tokenkeeper bench bare-handler < BODY.json",
		`Serves bench read's bare handler on a free loopback port with Go's
default settings: a net/http server answering the body it reads, as JSON
on standard input, to every request. It prints its URL and serves until
its standard input ends. bench read --bare-process runs it; it is not
meant to be run by hand.`)
	return func(args []string) error {
		if _, err := c.args(0, "no arguments"); err != nil {
			return err
		}
		r := bufio.NewReader(e.stdin)
		line, err := r.ReadBytes('\n')
		var in bareInput
		if err == nil {
			err = json.Unmarshal(line, &in)
		}
		if err != nil || len(in.Body) == 0 {
			return usagef("bench bare-handler: standard input holds no body: %v", err)
		}
		url, stop, err := bench.ServeBare("127.0.0.1:0", in.Body)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintln(e.stdout, url)
		ended := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, r); close(ended) }()
		select {
		case <-ended:
		case <-e.ctx.Done():
		}
		return nil
	}
}
