package bench

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// ChaosConfig configures a Chaos run. The zero value of an optional field
// is noted; the others must be set (the tokenkeeper command's flags have
// the defaults).
type ChaosConfig struct {
	Database    string // PostgreSQL URL; the run uses a fresh schema in it
	Binary      string // the tokenkeeper binary the replicas run
	Replicas    int    // 'tokenkeeper serve' processes, 1 to 32
	Credentials int    // 1 to 100000

	Lifetime  time.Duration // access token lifetime at the test provider, at least 2s
	Duration  time.Duration // of the chaos, after every credential has its first token
	KillEvery time.Duration // between replica kills; 0: none, else at least 1s
	Signal    string        // that kills a replica: "TERM" or "KILL" (any case, SIG prefix allowed)
	Grace     time.Duration // the provider's rotation grace period; 0: strict reuse detection

	DBRestartEvery   time.Duration // between PostgreSQL restarts; 0: none, else at least 10s
	DBRestartCommand []string      // restarts PostgreSQL; nil: pg_ctlcluster of the one local cluster

	Latency         time.Duration // test provider latency per token request
	ProviderTimeout time.Duration // the replicas' --provider-timeout; their lease is this plus 5s
	RefreshLead     time.Duration // of every credential; 0: lease + read leeway + 2s (see the command's help)

	Consumers     int // concurrent readers, 1 to 1024
	ReadRate      int // token reads per second over all readers, 1 to 100000
	ResourceEvery int // also call the provider's /resource with every N'th read; 0: never

	LogDir string // for the replicas' logs, kept; "": a temporary one, removed unless a check failed

	// Derived by validate.
	signal                      syscall.Signal
	signalName                  string // "SIGTERM" or "SIGKILL"
	lease, leeway               time.Duration
	leadCovers                  bool // the lead covers a killed replica's lease
	dbHostLoopback, dbHostKnown bool // from Database
}

// validate checks the configuration and derives the settings that depend
// on it. Its errors are ConfigErrors.
func (cfg *ChaosConfig) validate() error {
	switch {
	case cfg.Database == "":
		return configErrorf("--database (or $TOKENKEEPER_DATABASE) is required: a postgres:// URL")
	case !isPostgresURL(cfg.Database):
		return configErrorf("--database must be a PostgreSQL URL (postgres://...): replicas share one PostgreSQL database")
	case cfg.Binary == "":
		return configErrorf("--binary: the tokenkeeper binary to run the replicas with is required")
	case cfg.Replicas < 1 || cfg.Replicas > 32:
		return configErrorf("--replicas must be from 1 to 32")
	case cfg.Credentials < 1 || cfg.Credentials > 100000:
		return configErrorf("--credentials must be from 1 to 100000")
	case cfg.Lifetime < 2*time.Second:
		return configErrorf("--lifetime must be at least 2s")
	case cfg.Duration <= 0:
		return configErrorf("--duration must be positive")
	case cfg.KillEvery < 0 || (cfg.KillEvery > 0 && cfg.KillEvery < time.Second):
		return configErrorf("--kill-every must be 0 (no kills) or at least 1s")
	case cfg.Grace < 0:
		return configErrorf("--grace must not be negative")
	case cfg.DBRestartEvery < 0 || (cfg.DBRestartEvery > 0 && cfg.DBRestartEvery < 10*time.Second):
		return configErrorf("--db-restart-every must be 0 (none) or at least 10s")
	case cfg.Latency < 0 || cfg.ProviderTimeout <= cfg.Latency:
		return configErrorf("--latency must not be negative and --provider-timeout must exceed it")
	case cfg.RefreshLead < 0 || (cfg.RefreshLead > 0 && cfg.RefreshLead >= cfg.Lifetime):
		return configErrorf("--refresh-lead must be shorter than --lifetime")
	case cfg.Consumers < 1 || cfg.Consumers > 1024:
		return configErrorf("--consumers must be from 1 to 1024")
	case cfg.ReadRate < 1 || cfg.ReadRate > 100000:
		return configErrorf("--read-rate must be from 1 to 100000")
	case cfg.ResourceEvery < 0:
		return configErrorf("--resource-every must not be negative")
	}
	switch strings.TrimPrefix(strings.ToUpper(cfg.Signal), "SIG") {
	case "TERM":
		cfg.signal, cfg.signalName = syscall.SIGTERM, "SIGTERM"
	case "KILL":
		cfg.signal, cfg.signalName = syscall.SIGKILL, "SIGKILL"
	default:
		return configErrorf("--signal must be TERM or KILL, got %q", cfg.Signal)
	}
	u, err := url.Parse(cfg.Database)
	if err != nil {
		return configErrorf("--database is not a valid URL")
	}
	host := u.Hostname()
	cfg.dbHostKnown = host != ""
	cfg.dbHostLoopback = host == "localhost" || (net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback()) || strings.HasPrefix(host, "/")
	if cfg.DBRestartEvery > 0 {
		if cfg.dbHostKnown && !cfg.dbHostLoopback {
			return configErrorf("--db-restart-every restarts a local PostgreSQL, but --database names host %q", host)
		}
		if len(cfg.DBRestartCommand) == 0 {
			if cfg.DBRestartCommand, err = defaultDBRestartCommand(); err != nil {
				return err
			}
		}
	}
	cfg.lease, cfg.leeway, cfg.RefreshLead, cfg.leadCovers = refreshLead(cfg.Lifetime, cfg.ProviderTimeout, cfg.RefreshLead)
	return nil
}

// refreshLead derives a run's timing from the token lifetime, the
// replicas' provider timeout and the requested lead (0: the default). The
// lease is the refresher's default: the provider timeout plus 5s. The read
// leeway is the broker's: a tenth of the lifetime, at most 5s. The default
// lead is lease + leeway + 2s, or half the lifetime when that is more than
// three quarters of it; covers reports whether the lead leaves a killed
// replica's lease (and a second) to run out before readers need a new token.
func refreshLead(lifetime, providerTimeout, requested time.Duration) (lease, leeway, lead time.Duration, covers bool) {
	lease = providerTimeout + 5*time.Second
	leeway = readLeeway(lifetime)
	lead = requested
	if lead == 0 {
		lead = lease + leeway + 2*time.Second
		if lead > lifetime*3/4 {
			lead = lifetime / 2
		}
	}
	return lease, leeway, lead, lead >= lease+leeway+time.Second
}

// readLeeway is how long before expiry the broker stops serving a token.
func readLeeway(lifetime time.Duration) time.Duration { return min(lifetime/10, 5*time.Second) }

// defaultDBRestartCommand finds the one local Debian-style cluster.
func defaultDBRestartCommand() ([]string, error) {
	bin, err := exec.LookPath("pg_ctlcluster")
	if err != nil {
		return nil, configErrorf("--db-restart-every needs pg_ctlcluster (Debian's postgresql-common) or --db-restart-command")
	}
	entries, err := os.ReadDir("/etc/postgresql")
	var versions []string
	for _, en := range entries {
		if en.IsDir() {
			versions = append(versions, en.Name())
		}
	}
	if err != nil || len(versions) != 1 {
		return nil, configErrorf("--db-restart-every: expected exactly one cluster version in /etc/postgresql, found %d; pass --db-restart-command", len(versions))
	}
	return []string{bin, "--skip-systemctl-redirect", versions[0], "main", "restart"}, nil
}

// chaosRun is one run of Chaos. Its counters are updated by many
// goroutines; the slices are guarded by mu.
type chaosRun struct {
	cfg  *ChaosConfig
	w    Wiring
	logf Logf

	idp          *oauthtest.Server
	clientSecret string
	masterKey    string // base64
	dbURL        string // cfg.Database with the run's search_path
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

func (r *chaosRun) progress(format string, args ...any) { r.logf("bench chaos: "+format, args...) }

// Chaos runs several 'tokenkeeper serve' replicas (cfg.Binary) on one
// PostgreSQL database against the test provider, reads tokens from random
// replicas throughout, kills and restarts replicas (and the database, with
// cfg.DBRestartEvery), then compares the store with the provider's records.
// Everything it starts is stopped and removed before it returns; the
// replicas' logs are kept when a check failed. A configuration mistake is
// a *ConfigError, returned before anything starts. A run that completes
// returns its report, whose Violations list the failed checks.
func Chaos(ctx context.Context, cfg ChaosConfig, w Wiring, logf Logf) (rep *ChaosReport, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := w.need("OpenStore", "EventRetention"); err != nil {
		return nil, err
	}
	r := &chaosRun{cfg: &cfg, w: w, logf: logf, out: outages{replica: make([][]window, cfg.Replicas)}}
	defer func() {
		if err != nil || !rep.Pass {
			r.keepLogs = true // for the cause
		}
		r.cleanup()
	}()
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	if err := r.createCredentials(ctx); err != nil {
		return nil, err
	}
	if err := r.waitFirstTokens(ctx); err != nil {
		return nil, err
	}
	return r.chaos(ctx)
}

// replicaCommand is how every replica is started.
func (r *chaosRun) replicaCommand() replicaCommand {
	return replicaCommand{bin: r.cfg.Binary, env: r.childEnv(),
		args: []string{"--provider-timeout", r.cfg.ProviderTimeout.String(), "--log-format", "text", "--log-level", "info"}}
}

func (r *chaosRun) childEnv() []string {
	return childEnv(os.Environ(), "TOKENKEEPER_DATABASE="+r.dbURL, "TOKENKEEPER_MASTER_KEY="+r.masterKey, "TOKENKEEPER_ALLOW_PRIVATE_TOKEN_URLS=true")
}

// setup starts the provider, creates the schema, initializes the database
// and starts the replicas.
func (r *chaosRun) setup(ctx context.Context) error {
	cfg := r.cfg
	r.clientSecret = randomSecret()
	key := make([]byte, seal.KeySize)
	_, _ = rand.Read(key)
	r.masterKey = seal.EncodeMasterKey(key)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the test provider: %w", err)
	}
	r.idp = oauthtest.NewServerOn(ln, oauthtest.WithLifetime(cfg.Lifetime), oauthtest.WithRotation(true),
		oauthtest.WithReuseDetection(cfg.Grace), oauthtest.WithLatency(cfg.Latency),
		oauthtest.WithClient("chaos", r.clientSecret))

	schema := newSchemaName("tokenkeeper_chaos_")
	if err := execPG(ctx, cfg.Database, 10*time.Second, "CREATE SCHEMA "+schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	r.schema = schema
	if r.dbURL, err = withSearchPath(cfg.Database, r.schema); err != nil {
		return err
	}

	if cfg.LogDir != "" {
		if err := os.MkdirAll(cfg.LogDir, 0o700); err != nil {
			return fmt.Errorf("create log directory: %w", err)
		}
		r.logDir, r.keepLogs = cfg.LogDir, true
	} else if r.logDir, err = os.MkdirTemp("", "tokenkeeper-chaos-"); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}

	// tokenkeeper init: migrations, the first data key and an admin key.
	ictx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ictx, cfg.Binary, "init", "--json", "--key-name", "chaos")
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
	if r.store, err = r.w.OpenStore(ctx, r.dbURL, key); err != nil {
		return fmt.Errorf("open the store: %w", err)
	}

	ports, err := freePorts(cfg.Replicas)
	if err != nil {
		return err
	}
	rc := r.replicaCommand()
	for i := range cfg.Replicas {
		rep := &replica{index: i, addr: fmt.Sprintf("127.0.0.1:%d", ports[i])}
		rep.url = "http://" + rep.addr
		rep.log, err = os.OpenFile(filepath.Join(r.logDir, fmt.Sprintf("replica-%d.log", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("open replica log: %w", err)
		}
		r.replicas = append(r.replicas, rep)
		if err := rep.start(ctx, rc, 60*time.Second); err != nil {
			return err
		}
	}
	r.progress("%d replicas on %s, schema %s, %s; refresh lead %s (lease %s, read leeway %s); logs in %s",
		cfg.Replicas, redactURL(cfg.Database), r.schema, providerDesc(Duration(cfg.Grace)), cfg.RefreshLead, cfg.lease, cfg.leeway, r.logDir)
	if !cfg.leadCovers {
		r.progress("warning: the lifetime %s is too short for a lead of lease + leeway + 1s; a SIGKILL may let tokens run out", cfg.Lifetime)
	}
	return nil
}

// providerDesc describes the provider's reuse detection.
func providerDesc(grace Duration) string {
	if grace > 0 {
		return "provider grace " + grace.String()
	}
	return "strict provider (no grace)"
}

// cleanup stops everything the run started. It is safe to call whatever
// state setup reached.
func (r *chaosRun) cleanup() {
	var wg sync.WaitGroup
	for _, rep := range r.replicas {
		wg.Go(func() { rep.stop(syscall.SIGTERM, 10*time.Second) })
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
			err := execPG(context.Background(), r.cfg.Database, 10*time.Second, "DROP SCHEMA IF EXISTS "+r.schema+" CASCADE")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				r.progress("could not drop schema %s: %v", r.schema, err)
				break
			}
			time.Sleep(time.Second)
		}
	}
	if r.logDir != "" {
		if r.keepLogs {
			r.progress("replica logs kept in %s", r.logDir)
		} else {
			os.RemoveAll(r.logDir)
		}
	}
}

// createCredentials creates the credentials through the replicas' API.
func (r *chaosRun) createCredentials(ctx context.Context) error {
	start := time.Now()
	n := r.cfg.Credentials
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
				err := postJSON(ctx, hc, rep.url, r.adminKey, "/v1/credentials", map[string]any{
					"name": r.names[i], "token_url": r.idp.TokenURL(), "grant_type": "refresh_token",
					"client_id": "chaos", "client_secret": r.clientSecret,
					"refresh_token": r.idp.IssueRefreshToken("chaos", "read"),
					"refresh_lead":  r.cfg.RefreshLead.String(),
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
	limit := 60*time.Second + time.Duration(r.cfg.Credentials)*20*time.Millisecond
	for {
		creds, err := r.store.Credentials(ctx)
		have := 0
		if err == nil {
			for _, c := range creds {
				if c.Token != nil && c.Status == tokenkeeper.StatusActive {
					have++
				}
			}
			if have == r.cfg.Credentials {
				r.progress("first token for every credential after %s", time.Since(start).Round(time.Millisecond))
				return nil
			}
		}
		if time.Since(start) > limit {
			return fmt.Errorf("only %d of %d credentials got a first token within %s", have, r.cfg.Credentials, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
