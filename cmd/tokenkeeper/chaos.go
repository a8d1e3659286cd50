package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/postgres"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

const chaosAbout = `Runs several 'tokenkeeper serve' replicas on one PostgreSQL database
against the built-in test provider (rotating refresh tokens, reuse detection,
20 ms latency), reads tokens from random replicas throughout, and every
--kill-every sends one replica (round robin) --signal and restarts it on the
same port. --db-restart-every also restarts PostgreSQL itself (by default
'pg_ctlcluster --skip-systemctl-redirect VERSION main restart', which needs a
local Debian-style cluster and the rights to restart it).

Setup: a fresh schema in --database (dropped at the end), a random master key
given to every replica in $TOKENKEEPER_MASTER_KEY, 'tokenkeeper init' for an
admin key, N replicas on fixed loopback ports, and the credentials created
through the API (refresh_token grant, one token family each). Every
subprocess is stopped when the command ends, also on Ctrl-C; replica logs go
to --logs (default: a temporary directory, kept only if a check failed).

The refresh lead. A replica killed right after it claimed a credential keeps
the claim until its lease runs out (lease = --provider-timeout + 5s); then
another replica claims and refreshes it. Readers are served a token only while
it has more than a leeway left (a tenth of the lifetime, at most 5s). The
default lead is therefore lease + leeway + 2s (11s with the defaults), so that
a kill at the worst instant still leaves time for another replica to replace
the token before any reader could see it run out. When that does not fit in
the lifetime, the lead is half the lifetime and a SIGKILL may let tokens run
out (TERM never does: a replica finishes its refreshes on SIGTERM).

Reads are checked against the provider's own records (expired, revoked or
unknown token), and every --resource-every'th read also calls the provider's
protected /resource endpoint. Failed reads are split into those that overlap a
killed or restarting replica's downtime (plus 1s), those that overlap a
database restart (until the database answers again, plus 2s), those of
credentials lost, and all others.

At the end every replica is stopped with SIGTERM (so that nothing is cut by
the stop itself) and each credential is compared between the store and the
provider:
  - lost: needs_reauth in the store, or its refresh token's family revoked at
    the provider, or (strict provider) its stored refresh token is no longer
    the family's current one, so the next refresh would be a reuse;
  - refreshes answered but never committed, counted two ways that must agree:
    (a) the family's refresh tokens never presented to the provider, less the
        one the store holds (a token the store ever held was presented before
        it was replaced, so every other unpresented token is an answer the
        store never saw), and
    (b) the provider's successful refreshes of the family (its generation
        less one) less the store's committed 'ok' refresh events.
    Answers a replica received but discarded because it was fenced out are
    recorded as 'fenced' events; the rest are refreshes cut between the
    provider's answer and the commit (by a kill, or an answer lost in
    transit).
A loss on a credential without any cut refresh is a bug ("unexplained").

The table ends with one JSON line (--json prints only that). The command
exits non-zero when a check of the issue's acceptance fails: with SIGTERM or
a grace period, any reuse detection (outside the grace) or loss; always, an
expired, revoked or unknown token served for a credential not lost, an
unexplained loss or reuse detection, a replica that exited by itself, a
secret in a replica's log, or (with --db-restart-every) refreshes that did
not resume after a restart.`

// chaosConfig is the parsed command line of bench chaos.
type chaosConfig struct {
	replicas, credentials       int
	lifetime, duration          time.Duration
	killEvery, grace            time.Duration
	dbRestartEvery              time.Duration
	dbRestartCommand            []string
	signal                      syscall.Signal
	signalName                  string
	database                    string
	latency, providerTimeout    time.Duration
	refreshLead                 time.Duration
	consumers, readRate         int
	resourceEvery               int
	binary, logDir              string
	asJSON                      bool
	lease, leeway               time.Duration // derived
	leadCovers                  bool          // the lead covers a killed replica's lease
	dbHostLoopback, dbHostKnown bool          // derived from --database
}

func (e *env) cmdBenchChaos(args []string) error {
	c := newCommand(e.stderr, "tokenkeeper bench chaos --database postgres://... [--replicas 3] [--credentials 2000] [--lifetime 20s] [--duration 10m] [--kill-every 10s] [--signal TERM|KILL] [--grace D] [--db-restart-every D] [--json]", chaosAbout)
	var cfg chaosConfig
	c.fs.IntVar(&cfg.replicas, "replicas", 3, "number of 'tokenkeeper serve' replicas")
	c.fs.IntVar(&cfg.credentials, "credentials", 2000, "number of credentials")
	c.fs.DurationVar(&cfg.lifetime, "lifetime", 20*time.Second, "access token lifetime at the test provider")
	c.fs.DurationVar(&cfg.duration, "duration", 10*time.Minute, "how long to run the chaos, after every credential has its first token")
	c.fs.DurationVar(&cfg.killEvery, "kill-every", 10*time.Second, "interval between replica kills (0: none)")
	sig := c.fs.String("signal", "TERM", "signal that kills a replica: TERM or KILL")
	c.fs.DurationVar(&cfg.grace, "grace", 0, "the provider's rotation grace period (0: strict reuse detection)")
	c.fs.DurationVar(&cfg.dbRestartEvery, "db-restart-every", 0, "interval between PostgreSQL restarts (0: none)")
	dbCmd := c.fs.String("db-restart-command", "", "command that restarts PostgreSQL, split on spaces (default: pg_ctlcluster --skip-systemctl-redirect VERSION main restart)")
	c.fs.StringVar(&cfg.database, "database", "", "PostgreSQL URL (required); the run uses a fresh schema in it")
	c.fs.DurationVar(&cfg.latency, "latency", 20*time.Millisecond, "test provider latency per token request")
	c.fs.DurationVar(&cfg.providerTimeout, "provider-timeout", 2*time.Second, "the replicas' --provider-timeout; their lease is this plus 5s")
	c.fs.DurationVar(&cfg.refreshLead, "refresh-lead", 0, "refresh lead of every credential (default: lease + read leeway + 2s, see above)")
	c.fs.IntVar(&cfg.consumers, "consumers", 16, "concurrent readers")
	c.fs.IntVar(&cfg.readRate, "read-rate", 400, "token reads per second, over all readers")
	c.fs.IntVar(&cfg.resourceEvery, "resource-every", 10, "also call the provider's /resource with every N'th token read (0: never)")
	c.fs.StringVar(&cfg.binary, "binary", "", "tokenkeeper binary to run the replicas with (default: this one)")
	c.fs.StringVar(&cfg.logDir, "logs", "", "directory for the replicas' logs, kept (default: a temporary one, removed unless a check failed)")
	c.fs.BoolVar(&cfg.asJSON, "json", false, "print only the JSON line")
	c.noEnv = map[string]bool{"binary": true, "logs": true}
	if err := c.parse(args, e.getenv); err != nil {
		return err
	}
	if _, err := c.args(0, "no arguments"); err != nil {
		return err
	}
	if err := cfg.finish(*sig, *dbCmd); err != nil {
		return err
	}
	return e.runChaos(&cfg)
}

// finish validates the flags and derives the settings that depend on them.
func (cfg *chaosConfig) finish(sig, dbCmd string) error {
	switch {
	case cfg.database == "":
		return usagef("--database (or $TOKENKEEPER_DATABASE) is required: a postgres:// URL")
	case !isPostgres(cfg.database):
		return usagef("--database must be a PostgreSQL URL (postgres://...): replicas share one PostgreSQL database")
	case cfg.replicas < 1 || cfg.replicas > 32:
		return usagef("--replicas must be from 1 to 32")
	case cfg.credentials < 1 || cfg.credentials > 100000:
		return usagef("--credentials must be from 1 to 100000")
	case cfg.lifetime < 2*time.Second:
		return usagef("--lifetime must be at least 2s")
	case cfg.duration <= 0:
		return usagef("--duration must be positive")
	case cfg.killEvery < 0 || (cfg.killEvery > 0 && cfg.killEvery < time.Second):
		return usagef("--kill-every must be 0 (no kills) or at least 1s")
	case cfg.grace < 0:
		return usagef("--grace must not be negative")
	case cfg.dbRestartEvery < 0 || (cfg.dbRestartEvery > 0 && cfg.dbRestartEvery < 10*time.Second):
		return usagef("--db-restart-every must be 0 (none) or at least 10s")
	case cfg.latency < 0 || cfg.providerTimeout <= cfg.latency:
		return usagef("--latency must not be negative and --provider-timeout must exceed it")
	case cfg.refreshLead < 0 || (cfg.refreshLead > 0 && cfg.refreshLead >= cfg.lifetime):
		return usagef("--refresh-lead must be shorter than --lifetime")
	case cfg.consumers < 1 || cfg.consumers > 1024:
		return usagef("--consumers must be from 1 to 1024")
	case cfg.readRate < 1 || cfg.readRate > 100000:
		return usagef("--read-rate must be from 1 to 100000")
	case cfg.resourceEvery < 0:
		return usagef("--resource-every must not be negative")
	}
	switch strings.ToUpper(strings.TrimPrefix(strings.ToUpper(sig), "SIG")) {
	case "TERM":
		cfg.signal, cfg.signalName = syscall.SIGTERM, "SIGTERM"
	case "KILL":
		cfg.signal, cfg.signalName = syscall.SIGKILL, "SIGKILL"
	default:
		return usagef("--signal must be TERM or KILL, got %q", sig)
	}
	u, err := url.Parse(cfg.database)
	if err != nil {
		return usagef("--database is not a valid URL")
	}
	host := u.Hostname()
	cfg.dbHostKnown = host != ""
	cfg.dbHostLoopback = host == "localhost" || (net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback()) || strings.HasPrefix(host, "/")
	if cfg.dbRestartEvery > 0 {
		if cfg.dbHostKnown && !cfg.dbHostLoopback {
			return usagef("--db-restart-every restarts a local PostgreSQL, but --database names host %q", host)
		}
		if dbCmd != "" {
			cfg.dbRestartCommand = strings.Fields(dbCmd)
		} else {
			cmd, err := defaultDBRestartCommand()
			if err != nil {
				return err
			}
			cfg.dbRestartCommand = cmd
		}
	}
	// The lease is the refresher's default: the provider timeout plus 5s.
	cfg.lease = cfg.providerTimeout + 5*time.Second
	cfg.leeway = min(cfg.lifetime/10, 5*time.Second)
	cfg.leadCovers = true
	if cfg.refreshLead == 0 {
		cfg.refreshLead = cfg.lease + cfg.leeway + 2*time.Second
		if cfg.refreshLead > cfg.lifetime*3/4 {
			cfg.refreshLead = cfg.lifetime / 2
		}
	}
	if cfg.refreshLead < cfg.lease+cfg.leeway+time.Second {
		cfg.leadCovers = false
	}
	return nil
}

// defaultDBRestartCommand finds the one local Debian-style cluster.
func defaultDBRestartCommand() ([]string, error) {
	bin, err := exec.LookPath("pg_ctlcluster")
	if err != nil {
		return nil, usagef("--db-restart-every needs pg_ctlcluster (Debian's postgresql-common) or --db-restart-command")
	}
	entries, err := os.ReadDir("/etc/postgresql")
	var versions []string
	for _, en := range entries {
		if en.IsDir() {
			versions = append(versions, en.Name())
		}
	}
	if err != nil || len(versions) != 1 {
		return nil, usagef("--db-restart-every: expected exactly one cluster version in /etc/postgresql, found %d; pass --db-restart-command", len(versions))
	}
	return []string{bin, "--skip-systemctl-redirect", versions[0], "main", "restart"}, nil
}

// window is a time span; a zero to means it is still open.
type window struct{ from, to time.Time }

// overlaps reports whether [from, to+settle] meets [a, b].
func (w window) overlaps(a, b time.Time, settle time.Duration) bool {
	if b.Before(w.from) {
		return false
	}
	return w.to.IsZero() || !a.After(w.to.Add(settle))
}

// outages records when replicas and the database were down.
type outages struct {
	mu      sync.Mutex
	replica [][]window // guarded by mu: per replica
	db      []window   // guarded by mu
}

func (o *outages) open(list *[]window, at time.Time) {
	o.mu.Lock()
	*list = append(*list, window{from: at})
	o.mu.Unlock()
}

func (o *outages) close(list *[]window, at time.Time) {
	o.mu.Lock()
	if n := len(*list); n > 0 && (*list)[n-1].to.IsZero() {
		(*list)[n-1].to = at
	}
	o.mu.Unlock()
}

// Settling times after an outage during which a failed read is still
// blamed on it: stale keep-alive connections, pools reconnecting.
const (
	replicaSettle = time.Second
	dbSettle      = 2 * time.Second
)

// replicaProc is one run of a replica process.
type replicaProc struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed once the process exited and its output was drained
	exitedAt time.Time     // written before done is closed
	expected atomic.Bool   // the run stopped it on purpose
}

func (p *replicaProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// replica is one `tokenkeeper serve` subprocess slot, with a fixed port.
type replica struct {
	index int
	addr  string // 127.0.0.1:PORT, kept across restarts
	url   string
	log   *os.File // the replica's stdout and stderr, all runs appended

	mu   sync.Mutex
	proc *replicaProc // guarded by mu; nil while stopped
}

// failedRead is a token read that got no token.
type failedRead struct {
	replica    int
	name       string
	cause      string // "connection refused", "timeout", "http 503", ...
	start, end time.Time
}

// badRead is a read that returned a token the provider does not accept.
type badRead struct {
	name string
	kind string // "expired", "revoked" or "unknown"
}

// chaosRun is one run of bench chaos. Its counters are updated by many
// goroutines; the slices are guarded by mu.
type chaosRun struct {
	e   *env
	cfg *chaosConfig

	bin          string
	idp          *oauthtest.Server
	clientSecret string
	masterKey    string // base64
	dbURL        string // --database with the run's search_path
	schema       string
	adminKey     string
	store        tokenkeeper.Store // in-process view of the store, for the checks
	logDir       string
	keepLogs     bool
	replicas     []*replica
	names        []string
	out          outages

	reads, readsOK       atomic.Int64
	resourceCalls        atomic.Int64
	resourceRejected     atomic.Int64
	kills, escalated     atomic.Int64
	unexpectedExits      atomic.Int64
	dbRestartFailures    atomic.Int64
	dbRestartsNotResumed atomic.Int64

	mu           sync.Mutex
	failed       []failedRead    // guarded by mu
	bad          []badRead       // guarded by mu
	readLatency  []time.Duration // guarded by mu; successful reads
	restartTimes []time.Duration // guarded by mu: from the signal to serving again
	dbOutages    []time.Duration // guarded by mu: from the restart command to the database answering
	dbResumes    []time.Duration // guarded by mu: from the database answering to the next refresh answered
	notes        []string        // guarded by mu: things worth telling at the end
}

func (r *chaosRun) note(format string, args ...any) {
	r.mu.Lock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *chaosRun) progress(format string, args ...any) {
	fmt.Fprintf(r.e.stderr, "bench chaos: "+format+"\n", args...)
}

// runChaos sets up, runs and reports one chaos run; everything it starts is
// stopped and removed before it returns.
func (e *env) runChaos(cfg *chaosConfig) (err error) {
	r := &chaosRun{e: e, cfg: cfg, out: outages{replica: make([][]window, cfg.replicas)}}
	r.bin = cfg.binary
	if r.bin == "" {
		if r.bin, err = os.Executable(); err != nil {
			return fmt.Errorf("find this binary: %w", err)
		}
	}
	ctx := e.ctx
	defer func() {
		if err != nil {
			r.keepLogs = true // for the cause
		}
		r.cleanup()
	}()

	if err := r.setup(ctx); err != nil {
		return err
	}
	if err := r.createCredentials(ctx); err != nil {
		return err
	}
	if err := r.waitFirstTokens(ctx); err != nil {
		return err
	}
	rep, err := r.chaos(ctx)
	if err != nil {
		return err
	}
	if !cfg.asJSON {
		r.printTable(rep)
	}
	line, _ := json.Marshal(rep)
	fmt.Fprintln(e.stdout, string(line))
	if len(rep.Violations) > 0 {
		return fmt.Errorf("bench chaos: %d checks failed: %s", len(rep.Violations), strings.Join(rep.Violations, "; "))
	}
	return nil
}

// setup starts the provider, creates the schema, initializes the database
// and starts the replicas.
func (r *chaosRun) setup(ctx context.Context) error {
	cfg := r.cfg
	r.clientSecret = randomString()
	key := make([]byte, seal.KeySize)
	_, _ = rand.Read(key)
	r.masterKey = seal.EncodeMasterKey(key)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the test provider: %w", err)
	}
	r.idp = oauthtest.NewServerOn(ln, oauthtest.WithLifetime(cfg.lifetime), oauthtest.WithRotation(true),
		oauthtest.WithReuseDetection(cfg.grace), oauthtest.WithLatency(cfg.latency),
		oauthtest.WithClient("chaos", r.clientSecret))

	var b [4]byte
	_, _ = rand.Read(b[:])
	r.schema = "tokenkeeper_chaos_" + hex.EncodeToString(b[:])
	if err := withPG(ctx, cfg.database, 10*time.Second, "CREATE SCHEMA "+r.schema); err != nil {
		r.schema = ""
		return fmt.Errorf("create schema: %w", err)
	}
	u, err := url.Parse(cfg.database)
	if err != nil {
		return fmt.Errorf("parse --database: %w", err)
	}
	q := u.Query()
	q.Set("search_path", r.schema)
	u.RawQuery = q.Encode()
	r.dbURL = u.String()

	if cfg.logDir != "" {
		if err := os.MkdirAll(cfg.logDir, 0o700); err != nil {
			return fmt.Errorf("create log directory: %w", err)
		}
		r.logDir, r.keepLogs = cfg.logDir, true
	} else if r.logDir, err = os.MkdirTemp("", "tokenkeeper-chaos-"); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}

	// tokenkeeper init: migrations, the first data key and an admin key.
	ictx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ictx, r.bin, "init", "--json", "--key-name", "chaos")
	cmd.Env = r.childEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("tokenkeeper init: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var initOut struct {
		Key string `json:"admin_api_key"`
	}
	if err := json.Unmarshal(out, &initOut); err != nil || initOut.Key == "" {
		return fmt.Errorf("tokenkeeper init printed no admin key")
	}
	r.adminKey = initOut.Key
	store, err := postgres.Open(ctx, r.dbURL, key, postgres.WithLogger(discardLogger()))
	if err != nil {
		return fmt.Errorf("open the store: %w", err)
	}
	r.store = store

	ports, err := freePorts(cfg.replicas)
	if err != nil {
		return err
	}
	for i := range cfg.replicas {
		rep := &replica{index: i, addr: fmt.Sprintf("127.0.0.1:%d", ports[i])}
		rep.url = "http://" + rep.addr
		rep.log, err = os.OpenFile(filepath.Join(r.logDir, fmt.Sprintf("replica-%d.log", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("open replica log: %w", err)
		}
		r.replicas = append(r.replicas, rep)
		if err := r.startReplica(ctx, rep, 60*time.Second); err != nil {
			return err
		}
	}
	dbDesc := "strict provider (no grace)"
	if cfg.grace > 0 {
		dbDesc = fmt.Sprintf("provider grace %s", cfg.grace)
	}
	r.progress("%d replicas on %s, schema %s, %s; refresh lead %s (lease %s, read leeway %s); logs in %s",
		cfg.replicas, redactURL(cfg.database), r.schema, dbDesc, cfg.refreshLead, cfg.lease, cfg.leeway, r.logDir)
	if !cfg.leadCovers {
		r.progress("warning: the lifetime %s is too short for a lead of lease + leeway + 1s; a SIGKILL may let tokens run out", cfg.lifetime)
	}
	return nil
}

// withPG runs one statement on a new connection.
func withPG(ctx context.Context, database string, timeout time.Duration, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, database)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// childEnv is the environment of every subprocess: the database and master
// key (never on a command line, where the process list would show them), and
// what PostgreSQL clients and the OS need.
func (r *chaosRun) childEnv() []string {
	env := []string{"TOKENKEEPER_DATABASE=" + r.dbURL, "TOKENKEEPER_MASTER_KEY=" + r.masterKey}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PATH" || k == "HOME" || k == "TMPDIR" || strings.HasPrefix(k, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// startReplica starts rep's process, retrying (the database may be
// restarting, the port may still be held) for up to within.
func (r *chaosRun) startReplica(ctx context.Context, rep *replica, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		p, err := r.startProc(ctx, rep)
		if err == nil {
			rep.mu.Lock()
			rep.proc = p
			rep.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("start replica %d: %w", rep.index, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("start replica %d: %w", rep.index, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// dbDown reports whether a database restart is in progress.
func (r *chaosRun) dbDown() bool {
	r.out.mu.Lock()
	defer r.out.mu.Unlock()
	n := len(r.out.db)
	return n > 0 && r.out.db[n-1].to.IsZero()
}

// startProc starts one `tokenkeeper serve` process and waits until it serves.
func (r *chaosRun) startProc(ctx context.Context, rep *replica) (*replicaProc, error) {
	cmd := exec.Command(r.bin, "serve", "--addr", rep.addr, "--provider-timeout", r.cfg.providerTimeout.String(),
		"--log-format", "text", "--log-level", "info")
	cmd.Env = r.childEnv()
	cmd.Stderr = rep.log
	dieWithParent(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(rep.log, "--- bench chaos: starting replica %d at %s\n", rep.index, time.Now().UTC().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", r.bin, err)
	}
	p := &replicaProc{cmd: cmd, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		serving := false
		for sc.Scan() {
			fmt.Fprintf(rep.log, "stdout: %s\n", sc.Text())
			if !serving && strings.Contains(sc.Text(), "serving on ") {
				serving = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		p.exitedAt = time.Now()
		fmt.Fprintf(rep.log, "--- bench chaos: replica %d exited at %s: %s\n", rep.index, p.exitedAt.UTC().Format(time.RFC3339Nano), cmd.ProcessState)
		close(p.done)
	}()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("replica %d exited before serving (%s); see %s", rep.index, cmd.ProcessState, rep.log.Name())
	case <-timer.C:
	case <-ctx.Done():
	}
	p.expected.Store(true)
	_ = cmd.Process.Kill()
	<-p.done
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("replica %d did not serve within 30s; see %s", rep.index, rep.log.Name())
}

// stopReplica sends sig to rep's process and waits up to wait for it to
// exit, then kills it. It reports whether it had to kill.
func (r *chaosRun) stopReplica(rep *replica, sig syscall.Signal, wait time.Duration) (escalated bool) {
	rep.mu.Lock()
	p := rep.proc
	rep.proc = nil
	rep.mu.Unlock()
	if p == nil {
		return false
	}
	p.expected.Store(true)
	_ = p.cmd.Process.Signal(sig)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-p.done:
		return false
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return true
	}
}

// termWait is how long a replica may take to stop after SIGTERM: its
// shutdown timeout (15s by default) and a little more.
const termWait = 20 * time.Second

// cleanup stops everything the run started. It is safe to call whatever
// state setup reached.
func (r *chaosRun) cleanup() {
	var wg sync.WaitGroup
	for _, rep := range r.replicas {
		wg.Go(func() { r.stopReplica(rep, syscall.SIGTERM, 10*time.Second) })
	}
	wg.Wait()
	for _, rep := range r.replicas {
		rep.log.Close()
	}
	if r.store != nil {
		r.store.Close()
	}
	if r.idp != nil {
		r.idp.Close()
	}
	if r.schema != "" {
		// The database may be restarting: retry for a while.
		deadline := time.Now().Add(60 * time.Second)
		for {
			err := withPG(context.Background(), r.cfg.database, 10*time.Second, "DROP SCHEMA IF EXISTS "+r.schema+" CASCADE")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(r.e.stderr, "bench chaos: could not drop schema %s: %v\n", r.schema, err)
				break
			}
			time.Sleep(time.Second)
		}
	}
	if r.logDir != "" {
		if r.keepLogs {
			fmt.Fprintf(r.e.stderr, "bench chaos: replica logs kept in %s\n", r.logDir)
		} else {
			os.RemoveAll(r.logDir)
		}
	}
}

// createCredentials creates the credentials through the replicas' API.
func (r *chaosRun) createCredentials(ctx context.Context) error {
	start := time.Now()
	n := r.cfg.credentials
	r.names = make([]string, n)
	for i := range n {
		r.names[i] = fmt.Sprintf("chaos-%05d", i)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	jobs := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range jobs {
				rep := r.replicas[(i+w)%len(r.replicas)]
				api := &apiClient{base: rep.url, key: r.adminKey, client: hc}
				err := api.do(ctx, "POST", "/v1/credentials", map[string]any{
					"name": r.names[i], "token_url": r.idp.TokenURL(), "grant_type": "refresh_token",
					"client_id": "chaos", "client_secret": r.clientSecret,
					"refresh_token": r.idp.IssueRefreshToken("chaos", "read"),
					"refresh_lead":  r.cfg.refreshLead.String(),
				}, nil)
				if err != nil {
					errs <- fmt.Errorf("create credential %s: %w", r.names[i], err)
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range n {
		select {
		case jobs <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if err != nil {
		return err
	}
	r.progress("created %d credentials in %s", n, time.Since(start).Round(time.Millisecond))
	return nil
}

// waitFirstTokens waits until every credential has its first token.
func (r *chaosRun) waitFirstTokens(ctx context.Context) error {
	start := time.Now()
	limit := 60*time.Second + time.Duration(r.cfg.credentials)*20*time.Millisecond
	for {
		creds, err := r.store.Credentials(ctx)
		have := 0
		if err == nil {
			for _, c := range creds {
				if c.Token != nil && c.Status == tokenkeeper.StatusActive {
					have++
				}
			}
			if have == r.cfg.credentials {
				r.progress("first token for every credential after %s", time.Since(start).Round(time.Millisecond))
				return nil
			}
		}
		if time.Since(start) > limit {
			return fmt.Errorf("only %d of %d credentials got a first token within %s", have, r.cfg.credentials, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// chaos runs the readers, the kills and the database restarts for the
// duration, stops the replicas and evaluates.
func (r *chaosRun) chaos(ctx context.Context) (*chaosReport, error) {
	cfg := r.cfg
	before := r.idp.Stats()
	start := time.Now()
	wctx, stop := context.WithTimeout(ctx, cfg.duration)
	defer stop()

	var wg sync.WaitGroup
	// Readers, paced by one ticker shared by all.
	pace := make(chan struct{})
	wg.Go(func() {
		t := time.NewTicker(time.Second / time.Duration(cfg.readRate))
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				select {
				case pace <- struct{}{}:
				default: // all readers busy: skip the beat
				}
			}
		}
	})
	readTimeout := cfg.lease + 5*time.Second
	hc := &http.Client{Timeout: readTimeout, Transport: &http.Transport{
		MaxIdleConnsPerHost: cfg.consumers, IdleConnTimeout: 30 * time.Second, DisableCompression: true,
	}}
	defer hc.CloseIdleConnections()
	var readSeq atomic.Int64
	for range cfg.consumers {
		wg.Go(func() {
			for {
				select {
				case <-wctx.Done():
					return
				case <-pace:
				}
				withResource := cfg.resourceEvery > 0 && readSeq.Add(1)%int64(cfg.resourceEvery) == 0
				r.read(wctx, hc, r.replicas[mrand.IntN(len(r.replicas))], r.names[mrand.IntN(len(r.names))], withResource)
			}
		})
	}
	// Chaos: kills, and restarts of replicas that died by themselves.
	var chaosErr error
	wg.Go(func() { chaosErr = r.killLoop(ctx, wctx) })
	if cfg.dbRestartEvery > 0 {
		wg.Go(func() { r.dbRestartLoop(ctx, wctx) })
	}
	// Progress.
	wg.Go(func() {
		every := min(max(cfg.duration/10, 5*time.Second), time.Minute)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			st := r.idp.Stats()
			r.mu.Lock()
			failed := len(r.failed)
			r.mu.Unlock()
			r.progress("%s: %d reads (%d failed), %d kills, %d database restarts, %d reuse detections, %d grace reuses",
				time.Since(start).Round(time.Second), r.reads.Load(), failed, r.kills.Load(), len(r.dbOutagesSnapshot()),
				st.ReuseDetections-before.ReuseDetections, st.GraceReuses-before.GraceReuses)
		}
	})
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("bench chaos interrupted: %w", ctx.Err())
	}
	if chaosErr != nil {
		return nil, chaosErr
	}
	after := r.idp.Stats()

	// Stop every replica gently, so that the stop itself cuts nothing.
	r.progress("stopping the replicas with SIGTERM")
	var swg sync.WaitGroup
	var stopEscalated atomic.Int64
	for _, rep := range r.replicas {
		swg.Go(func() {
			if r.stopReplica(rep, syscall.SIGTERM, termWait) {
				stopEscalated.Add(1)
			}
		})
	}
	swg.Wait()
	if n := stopEscalated.Load(); n > 0 {
		r.note("%d replicas did not stop within %s of the final SIGTERM and were killed", n, termWait)
	}
	return r.evaluate(ctx, before, after, elapsed)
}

func (r *chaosRun) dbOutagesSnapshot() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.dbOutages)
}

// read reads one token from rep and checks it against the provider.
func (r *chaosRun) read(ctx context.Context, hc *http.Client, rep *replica, name string, withResource bool) {
	start := time.Now()
	r.reads.Add(1)
	fail := func(cause string) {
		if ctx.Err() != nil {
			r.reads.Add(-1) // cut by the end of the run: not a read
			return
		}
		r.mu.Lock()
		if len(r.failed) < 1_000_000 {
			r.failed = append(r.failed, failedRead{replica: rep.index, name: name, cause: cause, start: start, end: time.Now()})
		}
		r.mu.Unlock()
	}
	req, err := http.NewRequestWithContext(ctx, "GET", rep.url+"/v1/credentials/"+name+"/token", nil)
	if err != nil {
		fail("bad request")
		return
	}
	req.Header.Set("Authorization", "Bearer "+r.adminKey)
	resp, err := hc.Do(req)
	if err != nil {
		fail(connCause(err))
		return
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case err != nil:
		fail(connCause(err))
		return
	case resp.StatusCode != http.StatusOK:
		fail(fmt.Sprintf("http %d", resp.StatusCode))
		return
	case json.Unmarshal(body, &tok) != nil || tok.AccessToken == "":
		fail("no token in the answer")
		return
	}
	lat := time.Since(start)
	r.readsOK.Add(1)
	kind := ""
	switch info, ok := r.idp.AccessTokenInfo(tok.AccessToken); {
	case !ok:
		kind = "unknown"
	case info.Revoked:
		kind = "revoked"
	case info.Expired:
		kind = "expired"
	}
	if withResource {
		r.resourceCalls.Add(1)
		if !r.callResource(ctx, hc, tok.AccessToken) && ctx.Err() == nil {
			r.resourceRejected.Add(1)
			if kind == "" {
				kind = "rejected by /resource"
			}
		}
	}
	r.mu.Lock()
	if len(r.readLatency) < 4_000_000 {
		r.readLatency = append(r.readLatency, lat)
	}
	if kind != "" {
		r.bad = append(r.bad, badRead{name: name, kind: kind})
	}
	r.mu.Unlock()
}

// connCause names the kind of a transport error, without its details.
func connCause(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "connection error"
}

// callResource calls the provider's protected endpoint with token and
// reports whether it was accepted.
func (r *chaosRun) callResource(ctx context.Context, hc *http.Client, token string) bool {
	req, err := http.NewRequestWithContext(ctx, "GET", r.idp.ResourceURL(), nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// killLoop kills one replica every --kill-every, round robin, and restarts
// it; it also restarts a replica that exited by itself. Restarts use ctx,
// not wctx, so that one in progress at the end of the run completes.
func (r *chaosRun) killLoop(ctx, wctx context.Context) error {
	check := time.NewTicker(time.Second)
	defer check.Stop()
	var kill <-chan time.Time
	if r.cfg.killEvery > 0 {
		t := time.NewTicker(r.cfg.killEvery)
		defer t.Stop()
		kill = t.C
	}
	next := 0
	for {
		select {
		case <-wctx.Done():
			return nil
		case <-check.C:
			if err := r.reviveDead(ctx); err != nil {
				return err
			}
		case <-kill:
			rep := r.replicas[next%len(r.replicas)]
			next++
			if err := r.killAndRestart(ctx, rep); err != nil {
				return err
			}
		}
	}
}

// killAndRestart stops rep with the chaos signal and starts it again.
func (r *chaosRun) killAndRestart(ctx context.Context, rep *replica) error {
	t0 := time.Now()
	r.out.open(&r.out.replica[rep.index], t0)
	wait := termWait
	if r.cfg.signal == syscall.SIGKILL {
		wait = 10 * time.Second
	}
	if r.stopReplica(rep, r.cfg.signal, wait) {
		r.escalated.Add(1)
	}
	r.kills.Add(1)
	if err := r.startReplica(ctx, rep, 90*time.Second); err != nil {
		return err
	}
	now := time.Now()
	r.out.close(&r.out.replica[rep.index], now)
	r.mu.Lock()
	r.restartTimes = append(r.restartTimes, now.Sub(t0))
	r.mu.Unlock()
	return nil
}

// reviveDead restarts replicas whose process exited without being told to.
func (r *chaosRun) reviveDead(ctx context.Context) error {
	for _, rep := range r.replicas {
		rep.mu.Lock()
		p := rep.proc
		dead := p != nil && p.exited() && !p.expected.Load()
		if dead {
			rep.proc = nil
		}
		rep.mu.Unlock()
		if !dead {
			continue
		}
		r.unexpectedExits.Add(1)
		r.note("replica %d exited by itself at %s (%s); see %s", rep.index, p.exitedAt.UTC().Format(time.RFC3339), p.cmd.ProcessState, rep.log.Name())
		r.out.open(&r.out.replica[rep.index], p.exitedAt)
		if err := r.startReplica(ctx, rep, 90*time.Second); err != nil {
			return err
		}
		r.out.close(&r.out.replica[rep.index], time.Now())
	}
	return nil
}

// dbRestartLoop restarts PostgreSQL every --db-restart-every and measures
// how long it was down and how long refreshes took to resume.
func (r *chaosRun) dbRestartLoop(ctx, wctx context.Context) {
	t := time.NewTicker(r.cfg.dbRestartEvery)
	defer t.Stop()
	for {
		select {
		case <-wctx.Done():
			return
		case <-t.C:
		}
		t0 := time.Now()
		r.out.open(&r.out.db, t0)
		cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		out, err := exec.CommandContext(cctx, r.cfg.dbRestartCommand[0], r.cfg.dbRestartCommand[1:]...).CombinedOutput()
		cancel()
		if err != nil {
			r.dbRestartFailures.Add(1)
			r.note("database restart failed: %v: %s", err, strings.TrimSpace(string(out)))
		}
		up := r.waitDatabase(ctx, 90*time.Second)
		t1 := time.Now()
		r.out.close(&r.out.db, t1)
		if !up {
			r.note("the database did not answer within 90s of a restart")
			r.dbRestartsNotResumed.Add(1)
			continue
		}
		r.mu.Lock()
		r.dbOutages = append(r.dbOutages, t1.Sub(t0))
		r.mu.Unlock()
		r.progress("database restarted: down for %s", t1.Sub(t0).Round(time.Millisecond))
		// Refreshes resumed once the provider answers a refresh again: a
		// refresh needs a claim in the database first.
		base := successfulRefreshes(r.idp.Stats())
		deadline := t1.Add(60 * time.Second)
		for successfulRefreshes(r.idp.Stats()) == base {
			if time.Now().After(deadline) || ctx.Err() != nil {
				r.dbRestartsNotResumed.Add(1)
				r.note("no refresh within 60s after the database restart at %s", t0.UTC().Format(time.RFC3339))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if successfulRefreshes(r.idp.Stats()) != base {
			r.mu.Lock()
			r.dbResumes = append(r.dbResumes, time.Since(t1))
			r.mu.Unlock()
		}
	}
}

// successfulRefreshes counts refresh_token grants that issued tokens: with
// rotation, every refresh token issued except the first of each family.
func successfulRefreshes(st oauthtest.Stats) int {
	return st.RefreshTokensIssued - st.FamiliesStarted
}

// waitDatabase polls the database until it answers, for up to within.
func (r *chaosRun) waitDatabase(ctx context.Context, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for {
		if withPG(ctx, r.cfg.database, 2*time.Second, "SELECT 1") == nil {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// chaosReport is the result of a run, printed as a table and as JSON.
type chaosReport struct {
	Replicas        int    `json:"replicas"`
	Credentials     int    `json:"credentials"`
	Lifetime        string `json:"lifetime"`
	Duration        string `json:"duration"`
	KillEvery       string `json:"kill_every"`
	Signal          string `json:"signal"`
	Grace           string `json:"grace"`
	DBRestartEvery  string `json:"db_restart_every"`
	RefreshLead     string `json:"refresh_lead"`
	ProviderTimeout string `json:"provider_timeout"`
	Lease           string `json:"lease"`
	LeadCoversLease bool   `json:"lead_covers_lease"`

	Kills              int64   `json:"kills"`
	KillsEscalated     int64   `json:"kills_escalated_to_sigkill"`
	UnexpectedExits    int64   `json:"unexpected_exits"`
	RestartP50Seconds  float64 `json:"restart_p50_seconds"`
	RestartMaxSeconds  float64 `json:"restart_max_seconds"`
	DBRestarts         int     `json:"db_restarts"`
	DBRestartFailures  int64   `json:"db_restart_failures"`
	DBOutageMaxSeconds float64 `json:"db_outage_max_seconds"`
	DBResumeMaxSeconds float64 `json:"db_refresh_resume_max_seconds"`
	DBNotResumed       int64   `json:"db_restarts_not_resumed"`

	Reads                     int64          `json:"reads"`
	ReadsOK                   int64          `json:"reads_ok"`
	ReadP50MS                 float64        `json:"read_p50_ms"`
	ReadP99MS                 float64        `json:"read_p99_ms"`
	FailedReadsKilledReplica  int            `json:"failed_reads_killed_replica"`
	FailedReadsDBRestart      int            `json:"failed_reads_db_restart"`
	FailedReadsLostCredential int            `json:"failed_reads_lost_credential"`
	FailedReadsOther          int            `json:"failed_reads_other"`
	FailedReadsOtherCauses    map[string]int `json:"failed_reads_other_causes"`
	ExpiredServed             int            `json:"expired_served"`
	RevokedServed             int            `json:"revoked_served"`
	UnknownServed             int            `json:"unknown_served"`
	RejectedByResource        int64          `json:"resource_rejected"`
	ResourceCalls             int64          `json:"resource_calls"`
	BadServedLostCredentials  int            `json:"bad_served_for_lost_credentials"`

	ReuseDetections  int `json:"reuse_detections"`
	GraceReuses      int `json:"grace_reuses"`
	MaxPresentations int `json:"max_presentations"`

	CredentialsLost    int            `json:"credentials_lost"`
	NeedsReauth        int            `json:"needs_reauth"`
	FamiliesRevoked    int            `json:"families_revoked"`
	StaleRefreshTokens int            `json:"stale_refresh_tokens"`
	Statuses           map[string]int `json:"statuses"`
	UnexplainedLosses  int            `json:"unexplained_losses"`
	UnexplainedReuses  int            `json:"unexplained_reuses"`

	UncommittedAnswers       int     `json:"uncommitted_answers"`
	UncommittedByEvents      int     `json:"uncommitted_answers_by_events"`
	MethodsDisagree          int     `json:"methods_disagree"`
	EventsTruncated          int     `json:"events_truncated"`
	FencedAnswers            int     `json:"fenced_answers"`
	CutRefreshes             int     `json:"cut_refreshes"`
	CredentialsWithCuts      int     `json:"credentials_with_cuts"`
	ProviderRefreshCalls     int     `json:"provider_refresh_calls"`
	ProviderCallsPerLifetime float64 `json:"provider_calls_per_credential_per_lifetime"`
	SecretsInLogs            int     `json:"secrets_in_logs"`

	Notes      []string `json:"notes"`
	Violations []string `json:"violations"`
	Pass       bool     `json:"pass"`
}

// evaluate compares the store with the provider and builds the report.
func (r *chaosRun) evaluate(ctx context.Context, before, after oauthtest.Stats, elapsed time.Duration) (*chaosReport, error) {
	cfg := r.cfg
	rep := &chaosReport{
		Replicas: cfg.replicas, Credentials: cfg.credentials, Lifetime: cfg.lifetime.String(), Duration: cfg.duration.String(),
		KillEvery: cfg.killEvery.String(), Signal: cfg.signalName, Grace: cfg.grace.String(), DBRestartEvery: cfg.dbRestartEvery.String(),
		RefreshLead: cfg.refreshLead.String(), ProviderTimeout: cfg.providerTimeout.String(), Lease: cfg.lease.String(),
		LeadCoversLease: cfg.leadCovers, Statuses: map[string]int{}, FailedReadsOtherCauses: map[string]int{},
		Kills: r.kills.Load(), KillsEscalated: r.escalated.Load(), UnexpectedExits: r.unexpectedExits.Load(),
		DBRestartFailures: r.dbRestartFailures.Load(), DBNotResumed: r.dbRestartsNotResumed.Load(),
		Reads: r.reads.Load(), ReadsOK: r.readsOK.Load(),
		ResourceCalls: r.resourceCalls.Load(), RejectedByResource: r.resourceRejected.Load(),
		Notes: []string{}, Violations: []string{},
	}
	// Provider side, over the whole run (setup included): the checks are
	// about everything that ever happened.
	st := r.idp.Stats()
	rep.ReuseDetections, rep.GraceReuses, rep.MaxPresentations = st.ReuseDetections, st.GraceReuses, r.idp.MaxPresentations()
	rep.ProviderRefreshCalls = after.TokenRequests["refresh_token"] - before.TokenRequests["refresh_token"]
	if lifetimes := float64(cfg.credentials) * elapsed.Seconds() / cfg.lifetime.Seconds(); lifetimes > 0 {
		rep.ProviderCallsPerLifetime = float64(rep.ProviderRefreshCalls) / lifetimes
	}

	// Store against provider, credential by credential.
	var creds []*tokenkeeper.Credential
	err := retryStore(ctx, func(ctx context.Context) (err error) {
		creds, err = r.store.Credentials(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list credentials for the checks: %w", err)
	}
	families := map[string]oauthtest.FamilyInfo{}
	for _, f := range r.idp.Families() {
		families[f.ID] = f
	}
	lost := map[string]bool{}
	for _, c := range creds {
		rep.Statuses[string(c.Status)]++
		info, known := r.idp.RefreshTokenInfo(c.RefreshToken)
		fam := families[info.Family]
		isLost := false
		if c.Status == tokenkeeper.StatusNeedsReauth {
			rep.NeedsReauth++
			isLost = true
		}
		switch {
		case !known:
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: the store holds a refresh token the provider never issued", c.Name))
			isLost = true
		case info.Revoked:
			rep.FamiliesRevoked++
			isLost = true
		case !info.Current:
			rep.StaleRefreshTokens++
			if cfg.grace == 0 {
				isLost = true
			}
		}
		// Method (a): unpresented tokens besides the one the store holds.
		uncommitted := fam.Unpresented
		if known && info.Presentations == 0 {
			uncommitted--
		}
		// Method (b): provider refreshes less store commits.
		var events []*tokenkeeper.Event
		err := retryStore(ctx, func(ctx context.Context) (err error) {
			events, err = r.store.Events(ctx, c.Name, postgres.DefaultEventRetention+1)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("read events for the checks: %w", err)
		}
		committed, fenced := 0, 0
		for _, ev := range events {
			if ev.Kind != tokenkeeper.EventRefresh {
				continue
			}
			switch {
			case ev.Outcome == tokenkeeper.OutcomeOK:
				committed++
			case ev.Outcome == tokenkeeper.OutcomeFenced && ev.ErrorCode == "":
				fenced++
			}
		}
		byEvents := fam.Generation - 1 - committed
		if len(events) >= postgres.DefaultEventRetention {
			rep.EventsTruncated++
		} else if byEvents != uncommitted {
			rep.MethodsDisagree++
		}
		rep.UncommittedAnswers += uncommitted
		rep.UncommittedByEvents += byEvents
		rep.FencedAnswers += fenced
		cuts := max(uncommitted-fenced, 0)
		rep.CutRefreshes += cuts
		if uncommitted > 0 {
			rep.CredentialsWithCuts++
		}
		if isLost {
			rep.CredentialsLost++
			lost[c.Name] = true
			if uncommitted == 0 {
				rep.UnexplainedLosses++
			}
		}
	}
	if len(creds) != cfg.credentials {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the store holds %d credentials, not %d", len(creds), cfg.credentials))
	}
	// Every reuse detection needs a token presented after its successor
	// was issued: a credential with an answer never committed.
	rep.UnexplainedReuses = max(rep.ReuseDetections-rep.CredentialsWithCuts, 0)

	// Reads.
	r.mu.Lock()
	lat := slices.Clone(r.readLatency)
	failed := slices.Clone(r.failed)
	bad := slices.Clone(r.bad)
	restarts := slices.Clone(r.restartTimes)
	rep.Notes = append(rep.Notes, r.notes...)
	dbo, dbr := slices.Clone(r.dbOutages), slices.Clone(r.dbResumes)
	r.mu.Unlock()
	slices.Sort(lat)
	rep.ReadP50MS = float64(percentile(lat, 0.5).Microseconds()) / 1000
	rep.ReadP99MS = float64(percentile(lat, 0.99).Microseconds()) / 1000
	slices.Sort(restarts)
	rep.RestartP50Seconds = percentile(restarts, 0.5).Seconds()
	if len(restarts) > 0 {
		rep.RestartMaxSeconds = restarts[len(restarts)-1].Seconds()
	}
	rep.DBRestarts = len(dbo)
	if len(dbo) > 0 {
		rep.DBOutageMaxSeconds = slices.Max(dbo).Seconds()
	}
	if len(dbr) > 0 {
		rep.DBResumeMaxSeconds = slices.Max(dbr).Seconds()
	}
	r.out.mu.Lock()
	for _, f := range failed {
		switch {
		case overlapsAny(r.out.replica[f.replica], f.start, f.end, replicaSettle):
			rep.FailedReadsKilledReplica++
		case overlapsAny(r.out.db, f.start, f.end, dbSettle):
			rep.FailedReadsDBRestart++
		case lost[f.name]:
			rep.FailedReadsLostCredential++
		default:
			rep.FailedReadsOther++
			rep.FailedReadsOtherCauses[f.cause]++
		}
	}
	r.out.mu.Unlock()
	for _, b := range bad {
		if lost[b.name] {
			rep.BadServedLostCredentials++
		}
		switch b.kind {
		case "expired":
			rep.ExpiredServed++
		case "revoked":
			rep.RevokedServed++
		default:
			rep.UnknownServed++
		}
	}
	rep.SecretsInLogs = r.scanLogs()
	r.judge(rep)
	return rep, nil
}

func overlapsAny(ws []window, a, b time.Time, settle time.Duration) bool {
	for _, w := range ws {
		if w.overlaps(a, b, settle) {
			return true
		}
	}
	return false
}

// retryStore runs f with a bounded context, retrying for up to a minute
// while the database is unreachable (it may just have been restarted).
func retryStore(ctx context.Context, f func(context.Context) error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := f(qctx)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Second)
	}
}

// secretRE matches what the provider and the broker issue: access and
// refresh tokens of oauthtest, and API keys.
var secretRE = regexp.MustCompile(`\b(oat_|ort_|tk_)[A-Za-z0-9_-]{43}`)

// scanLogs counts secrets in the replicas' logs: any token or API key, the
// client secret and the master key.
func (r *chaosRun) scanLogs() int {
	n := 0
	for _, rep := range r.replicas {
		f, err := os.Open(rep.log.Name())
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if secretRE.MatchString(line) || strings.Contains(line, r.clientSecret) || strings.Contains(line, r.masterKey) {
				n++
			}
		}
		f.Close()
	}
	return n
}

// judge lists the failed checks of the issue's acceptance for this mode.
func (r *chaosRun) judge(rep *chaosReport) {
	cfg := r.cfg
	v := func(format string, args ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
	}
	if n := rep.ExpiredServed + rep.RevokedServed + rep.UnknownServed - rep.BadServedLostCredentials; n > 0 {
		v("%d expired, revoked or unknown tokens served for credentials not lost", n)
	}
	if rep.UnexplainedLosses > 0 {
		v("%d credentials lost without any refresh cut between answer and commit", rep.UnexplainedLosses)
	}
	if rep.UnexplainedReuses > 0 {
		v("%d reuse detections more than credentials with a cut refresh", rep.UnexplainedReuses)
	}
	if rep.UnexpectedExits > 0 {
		v("%d replicas exited by themselves", rep.UnexpectedExits)
	}
	if rep.SecretsInLogs > 0 {
		v("%d log lines hold a secret", rep.SecretsInLogs)
	}
	if cfg.signal == syscall.SIGTERM || cfg.grace > 0 {
		if rep.ReuseDetections > 0 {
			v("%d reuse detections outside the grace period", rep.ReuseDetections)
		}
		if rep.CredentialsLost > 0 {
			v("%d credentials lost", rep.CredentialsLost)
		}
	}
	if cfg.dbRestartEvery > 0 {
		if rep.DBRestartFailures > 0 {
			v("%d database restarts failed", rep.DBRestartFailures)
		}
		if rep.DBNotResumed > 0 {
			v("refreshes did not resume after %d database restarts", rep.DBNotResumed)
		}
	}
	rep.Pass = len(rep.Violations) == 0
}

// printTable prints the human-readable report.
func (r *chaosRun) printTable(rep *chaosReport) {
	cfg := r.cfg
	provider := "strict provider (no grace)"
	if cfg.grace > 0 {
		provider = "provider grace " + cfg.grace.String()
	}
	w := tabwriter.NewWriter(r.e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "bench chaos: %d replicas, %d credentials, lifetime %s, %s, kill every %s with %s, %s\n",
		cfg.replicas, cfg.credentials, cfg.lifetime, cfg.duration, cfg.killEvery, cfg.signalName, provider)
	fmt.Fprintf(w, "  refresh lead\t%s (lease %s = provider timeout %s + 5s; read leeway %s)\n", cfg.refreshLead, cfg.lease, cfg.providerTimeout, cfg.leeway)
	fmt.Fprintf(w, "  kills\t%d (restart p50 %.2fs, max %.2fs; %d escalated to SIGKILL; %d replicas exited by themselves)\n",
		rep.Kills, rep.RestartP50Seconds, rep.RestartMaxSeconds, rep.KillsEscalated, rep.UnexpectedExits)
	if cfg.dbRestartEvery > 0 {
		fmt.Fprintf(w, "  database restarts\t%d (every %s; %d failed; down at most %.2fs; refreshes resumed at most %.2fs after it answered; %d did not resume)\n",
			rep.DBRestarts, cfg.dbRestartEvery, rep.DBRestartFailures, rep.DBOutageMaxSeconds, rep.DBResumeMaxSeconds, rep.DBNotResumed)
	}
	fmt.Fprintf(w, "  reads\t%d, %d with a token (p50 %.1fms, p99 %.1fms)\n", rep.Reads, rep.ReadsOK, rep.ReadP50MS, rep.ReadP99MS)
	fmt.Fprintf(w, "  failed reads\t%d to a killed or restarting replica, %d during a database restart, %d of lost credentials, %d others\n",
		rep.FailedReadsKilledReplica, rep.FailedReadsDBRestart, rep.FailedReadsLostCredential, rep.FailedReadsOther)
	if rep.FailedReadsOther > 0 {
		fmt.Fprintf(w, "  other failed reads by cause\t%s\n", formatCounts(rep.FailedReadsOtherCauses))
	}
	fmt.Fprintf(w, "  tokens served expired / revoked / unknown\t%d / %d / %d (%d of them for lost credentials)\n",
		rep.ExpiredServed, rep.RevokedServed, rep.UnknownServed, rep.BadServedLostCredentials)
	fmt.Fprintf(w, "  provider /resource calls\t%d, %d rejected\n", rep.ResourceCalls, rep.RejectedByResource)
	fmt.Fprintf(w, "  reuse detections\t%d outside the grace period, %d grace reuses; a refresh token presented at most %d times\n",
		rep.ReuseDetections, rep.GraceReuses, rep.MaxPresentations)
	fmt.Fprintf(w, "  credentials lost\t%d (%d needs_reauth, %d families revoked, %d stored refresh tokens superseded); %d unexplained\n",
		rep.CredentialsLost, rep.NeedsReauth, rep.FamiliesRevoked, rep.StaleRefreshTokens, rep.UnexplainedLosses)
	fmt.Fprintf(w, "  refreshes cut between answer and commit\t%d on %d credentials (answers never committed: %d by tokens never presented, %d by provider refreshes less store commits; %d discarded by fencing)\n",
		rep.CutRefreshes, rep.CredentialsWithCuts, rep.UncommittedAnswers, rep.UncommittedByEvents, rep.FencedAnswers)
	if rep.MethodsDisagree > 0 || rep.EventsTruncated > 0 {
		fmt.Fprintf(w, "  count methods\t%d credentials where the two counts disagree, %d with truncated events\n", rep.MethodsDisagree, rep.EventsTruncated)
	}
	fmt.Fprintf(w, "  provider calls\t%.2f per credential per lifetime (%d refresh requests during the run)\n", rep.ProviderCallsPerLifetime, rep.ProviderRefreshCalls)
	fmt.Fprintf(w, "  statuses\t%s\n", formatCounts(rep.Statuses))
	fmt.Fprintf(w, "  secrets in replica logs\t%d\n", rep.SecretsInLogs)
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "  note\t%s\n", n)
	}
	verdict := "PASS"
	if !rep.Pass {
		verdict = "FAIL: " + strings.Join(rep.Violations, "; ")
	}
	fmt.Fprintf(w, "  verdict\t%s\n", verdict)
	w.Flush()
}

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
