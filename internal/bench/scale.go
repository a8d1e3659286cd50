package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// ScaleConfig configures a Scale run.
type ScaleConfig struct {
	Credentials int           // seeded credentials, at least 1
	Lifetime    time.Duration // access token lifetime at the test provider, at least 3s
	Window      time.Duration // measuring time, positive
	Latency     time.Duration // test provider latency per token request
	Concurrency int           // refreshes in flight at most, per replica
	Database    string        // postgres:// URL; "": a temporary SQLite file
	Replicas    int           // brokers sharing the credentials (PostgreSQL only for more than 1)
	// ReadConnections keep-alive connections read tokens throughout, at
	// ReadRate requests per second in all, during QuietWindow (before the
	// seeded credentials exist: no refresh load) and during Window.
	ReadConnections int
	ReadRate        int
	QuietWindow     time.Duration
	// BareControl, if set, runs the same reads for QuietWindow against a
	// bare net/http handler answering a body of the token answer's size
	// (in another process with Wiring.StartBare): once before the
	// seeding, and once after the window beside the same refresh load.
	// What the load does to the bare handler's p99 is what the machine
	// does to any server's beside it; the broker's ratio is read against
	// that.
	BareControl bool
	// CPUProfile, if not nil, receives a CPU profile of the window.
	CPUProfile io.Writer
}

// scaleReadSet is how many credentials, besides the seeded ones, the read
// load reads: their tokens outlive the run, so reading them costs the
// refresher nothing.
const scaleReadSet = 256

// importBatch is how many credentials one ImportCredentials call (one
// transaction) seeds.
const importBatch = 10_000

func (c *ScaleConfig) validate() error {
	if c.Credentials < 1 || c.Lifetime < 3*time.Second || c.Window <= 0 || c.Latency < 0 || c.Concurrency < 1 {
		return configErrorf("--credentials must be positive, --lifetime at least 3s, --window and --concurrency positive")
	}
	if c.Replicas < 1 || (c.Replicas > 1 && !isPostgresURL(c.Database)) {
		return configErrorf("--replicas must be positive, and more than 1 only with --database postgres://...")
	}
	if c.ReadConnections < 1 || c.ReadConnections > 4096 || c.ReadRate < 1 || c.QuietWindow <= 0 {
		return configErrorf("--read-connections must be from 1 to 4096, --read-rate and --quiet-window positive")
	}
	return nil
}

// ScaleReport is what a Scale run measured.
type ScaleReport struct {
	Database        string   `json:"database"`
	Credentials     int      `json:"credentials"`
	Lifetime        Duration `json:"lifetime"`
	Lead            Duration `json:"lead"` // the refresher's default lead for this lifetime
	Window          Duration `json:"window"`
	ProviderLatency Duration `json:"provider_latency"`
	Concurrency     int      `json:"concurrency"`
	Replicas        int      `json:"replicas"`
	ReadConnections int      `json:"read_connections"`
	ReadRate        int      `json:"read_rate"`
	QuietWindow     Duration `json:"quiet_window"`
	// ReadsFrom says where the reads ran: "a separate process" (as a
	// service's would) or "this process" (sharing its scheduler with the
	// broker's refreshes, which adds their waits to the reads').
	ReadsFrom string `json:"reads_from"`

	SeedSeconds float64 `json:"seed_seconds"` // bulk insert of every credential
	// HistoryEvents is how many refresh events were seeded as history, and
	// HistoryNote which retention limit they bring into steady state.
	HistoryEvents int    `json:"history_events"`
	HistoryNote   string `json:"history_note"`
	// CycleEvents and CycleCredentials are the rows of the vacuum cycle
	// before the window (PostgreSQL): events seeded and pruned, and
	// credentials given a new row version, before the last vacuum, so that
	// the tables hold the free space they hold in the steady state.
	CycleEvents      int `json:"cycle_events,omitempty"`
	CycleCredentials int `json:"cycle_credentials,omitempty"`
	// HistoryCoverSeconds: the history holds the events that age out, and
	// those of the credentials refreshed, from the start of its seeding
	// until this many seconds later, long enough for a window that starts
	// after the seeding, the restart and the backlog (planHistoryCover).
	// HistoryShortSeconds is how long the window ran past that (then
	// nothing aged out, and database growth is overstated); 0 if it did
	// not.
	HistoryCoverSeconds float64 `json:"history_cover_seconds"`
	HistoryShortSeconds float64 `json:"history_short_seconds,omitempty"`
	// LeaseCycleCredentials were leased and released once after seeding,
	// as a refresh does, where that leaves its row on a page the bulk
	// seeding filled (SQLite): the table's pages hold the slack of the
	// steady state (sqliteLeaseCycle).
	LeaseCycleCredentials int `json:"lease_cycle_credentials,omitempty"`
	// Start-up, from opening the store (the process's start, minus the Go
	// runtime's) with every credential in it: to the first token served
	// over HTTP, and to the first refresh committed (the schedule is the
	// database's next_refresh_at index: nothing is loaded before it works).
	StartToFirstTokenSeconds   float64 `json:"start_to_first_token_seconds"`
	StartToFirstRefreshSeconds float64 `json:"start_to_first_refresh_seconds"`
	// BacklogAtStart credentials came due while seeding and restarting;
	// the window starts once as many refreshes have committed and the
	// refreshes have caught up with the schedule (BacklogClearedSeconds).
	BacklogAtStart        int     `json:"backlog_at_start"`
	BacklogClearedSeconds float64 `json:"backlog_cleared_seconds"`

	Refreshes                int     `json:"refreshes"` // successful, in the window
	RefreshesPerSecond       float64 `json:"refreshes_per_second"`
	RefreshesPerReplica      []int   `json:"refreshes_per_replica"`
	LateRefreshes            int     `json:"late_refreshes"`
	ExpiredUnrefreshed       int     `json:"expired_unrefreshed"`
	FailedAttempts           int     `json:"failed_attempts"`
	Fenced                   int     `json:"fenced"`
	RefreshedBeforeExpiryPct float64 `json:"refreshed_before_expiry_pct"`
	ProviderCalls            int     `json:"provider_calls"`
	ProviderCallsPerToken    float64 `json:"provider_calls_per_token"`
	// Refresh lag: how long before the replaced token's expiry each
	// refresh committed (negative: after).
	LagP1Seconds  float64 `json:"lag_p1_seconds"`
	LagP50Seconds float64 `json:"lag_p50_seconds"`
	LagP99Seconds float64 `json:"lag_p99_seconds"`

	PeakRSSMiB     float64 `json:"peak_rss_mib"`      // from the restart on (seeding excluded)
	SeedPeakRSSMiB float64 `json:"seed_peak_rss_mib"` // up to the restart

	ReadQuietP50MS   float64 `json:"read_quiet_p50_ms"`
	ReadQuietP99MS   float64 `json:"read_quiet_p99_ms"`
	ReadQuietErrors  int64   `json:"read_quiet_errors"`
	ReadLoadedP50MS  float64 `json:"read_loaded_p50_ms"`
	ReadLoadedP99MS  float64 `json:"read_loaded_p99_ms"`
	ReadLoadedErrors int64   `json:"read_loaded_errors"`
	ReadLoadedRPS    float64 `json:"read_loaded_rps"`
	// The share of the machine's CPU time that its host stole (/proc/stat
	// steal: a virtual CPU ready to run while the host ran something
	// else), in percent, while the reads without and with the refresh
	// load ran; -1 where unknown. On a virtual machine a stolen slice
	// delays whatever was to run on that CPU, token reads included, so a
	// read p99 measured under much steal is the host's as well as the
	// broker's.
	StealQuietPct  float64 `json:"host_steal_quiet_pct"`
	StealLoadedPct float64 `json:"host_steal_loaded_pct"`
	// Bare is the control (ScaleConfig.BareControl); nil without it.
	Bare *BareControl `json:"bare_control,omitempty"`

	DatabaseBytesStart    int64   `json:"database_bytes_start"`
	DatabaseBytesEnd      int64   `json:"database_bytes_end"`
	DatabaseGrowthPerHour float64 `json:"database_growth_mib_per_hour"`
	DatabaseGrowthPerDay  float64 `json:"database_growth_gib_per_day"`
	// Net rows added in the window: refresh and operator events (inserted
	// less pruned), and audit records (the token reads', aggregated per
	// reader, credential, address and --audit-read-window, one minute by
	// default; kept --audit-retention, 90 days).
	EventRowsAdded int64 `json:"event_rows_added"`
	AuditRowsAdded int64 `json:"audit_rows_added"`
	// Bytes this process caused to be written to storage during the
	// window (/proc/self/io write_bytes), per refresh; SQLite only (a
	// PostgreSQL server writes in its own processes).
	WrittenBytes           int64   `json:"written_bytes"`
	WrittenBytesPerRefresh float64 `json:"written_bytes_per_refresh"`
}

// BareControl is what the control of a Scale run measured: the same reads
// of a bare handler, without and beside the refresh load.
type BareControl struct {
	In        string `json:"in"`         // where it ran: "a separate process" or "this process"
	BodyBytes int    `json:"body_bytes"` // its answer, as long as a token read's
	// Latencies without and beside the refresh load, the errors of both,
	// and the host's steal meanwhile (-1: unknown), as for the token reads.
	QuietP50MS     float64 `json:"quiet_p50_ms"`
	QuietP99MS     float64 `json:"quiet_p99_ms"`
	LoadedP50MS    float64 `json:"loaded_p50_ms"`
	LoadedP99MS    float64 `json:"loaded_p99_ms"`
	Errors         int64   `json:"errors"`
	StealQuietPct  float64 `json:"host_steal_quiet_pct"`
	StealLoadedPct float64 `json:"host_steal_loaded_pct"`
}

// scaleTracker follows every seeded credential's token expiry (by its
// number, to keep the harness's own memory small) and the refreshes in the
// window.
type scaleTracker struct {
	mu        sync.Mutex
	expiry    []int64 // guarded by mu: current token expiry, Unix ns, per seeded credential
	measuring bool    // guarded by mu
	ok, late  int     // guarded by mu
	failed    int     // guarded by mu
	fenced    int     // guarded by mu
	lags      []time.Duration
	perRep    []int // guarded by mu: refreshes per replica, in the window
	// callWindow is when the provider calls counted lie: Unix ns, end 0
	// while open; okCalls counts the successful attempts whose call
	// started in it, committed at any time.
	callFrom, callTo int64 // guarded by mu
	okCalls          int   // guarded by mu
	all              int   // guarded by mu: successful refreshes since the restart
	first            atomic.Int64
}

// onAttempt returns the OnAttempt hook of replica rep.
func (t *scaleTracker) onAttempt(rep int) func(c *tokenkeeper.Credential, ev *tokenkeeper.Event) {
	return func(c *tokenkeeper.Credential, ev *tokenkeeper.Event) {
		t.first.CompareAndSwap(0, time.Now().UnixNano())
		num, ok := strings.CutPrefix(c.Name, "scale-")
		if !ok {
			return
		}
		i, err := strconv.Atoi(num)
		if err != nil || i < 0 || i >= len(t.expiry) {
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		switch ev.Outcome {
		case tokenkeeper.OutcomeOK:
		case tokenkeeper.OutcomeFenced:
			if t.measuring {
				t.fenced++
			}
			return
		default:
			if t.measuring {
				t.failed++
			}
			return
		}
		if callStart := ev.Time.Add(-ev.Latency).UnixNano(); t.callFrom > 0 && callStart >= t.callFrom && (t.callTo == 0 || callStart < t.callTo) {
			t.okCalls++
		}
		t.all++
		prev := t.expiry[i]
		if c.Token != nil {
			t.expiry[i] = c.Token.ExpiresAt.UnixNano()
		}
		if !t.measuring {
			return
		}
		t.ok++
		t.perRep[rep]++
		lag := time.Duration(prev - ev.Time.UnixNano())
		t.lags = append(t.lags, lag)
		if lag < 0 {
			t.late++
		}
	}
}

// Scale measures the broker at scale in its steady state without waiting
// for it: it seeds cfg.Credentials credentials of one provider (the test
// provider, client credentials, cfg.Latency per call) directly in the
// store, each with a sealed token, their refresh times spread evenly over
// one refresh period, so that the run starts in steady state. Then it
// restarts the broker on the full database (start-up figures) and measures
// for cfg.Window: refreshes, their lag before expiry, provider calls,
// memory, read latency, database growth and bytes written. Reads of
// credentials that need no refresh run throughout, and once before the
// seeding, without refresh load, for comparison. The database it creates
// is removed before it returns.
func Scale(ctx context.Context, cfg ScaleConfig, w Wiring, logf Logf) (*ScaleReport, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := w.need("OpenStore", "StartBroker", "CreateAdminKey"); err != nil {
		return nil, err
	}
	db, err := openBenchStore(ctx, w, cfg.Database)
	if err != nil {
		return nil, err
	}
	store := db.store
	defer func() {
		if store != nil {
			store.Close()
		}
		db.cleanup()
	}()
	im, ok := store.(interface {
		ImportCredentials(ctx context.Context, provider string, cs []*tokenkeeper.Credential) error
	})
	if !ok {
		return nil, errors.New("bench scale: the store cannot import credentials in bulk")
	}
	secret := randomSecret()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(cfg.Lifetime), oauthtest.WithLatency(cfg.Latency), oauthtest.WithClient("bench", secret))
	defer idp.Close()
	if err := store.CreateProvider(ctx, &tokenkeeper.Provider{Name: "scale", TokenURL: idp.TokenURL(), ClientID: "bench",
		ClientSecret: secret, AuthStyle: tokenkeeper.AuthStyleHeader}); err != nil {
		return nil, fmt.Errorf("create provider: %w", err)
	}
	key, err := w.CreateAdminKey(ctx, store, "bench")
	if err != nil {
		return nil, err
	}
	// The refresher's default lead for this lifetime (refresh.Config:
	// a third, at most 5 minutes): a token is replaced every period.
	lead := min(cfg.Lifetime/3, 5*time.Minute)
	period := cfg.Lifetime - lead
	rep := &ScaleReport{Database: db.desc, Credentials: cfg.Credentials, Lifetime: Duration(cfg.Lifetime), Lead: Duration(lead),
		Window: Duration(cfg.Window), ProviderLatency: Duration(cfg.Latency), Concurrency: cfg.Concurrency, Replicas: cfg.Replicas,
		ReadConnections: cfg.ReadConnections, ReadRate: cfg.ReadRate, QuietWindow: Duration(cfg.QuietWindow)}
	logf("bench scale: %d credentials, lifetime %s (refreshed %s before expiry), provider latency %s, %d replica(s), %s",
		cfg.Credentials, cfg.Lifetime, lead, cfg.Latency, cfg.Replicas, db.desc)

	// The read set: tokens that outlive the run.
	now := time.Now()
	far := now.Add(cfg.QuietWindow + cfg.Window + 10*cfg.Lifetime + 24*time.Hour)
	var readSet []*tokenkeeper.Credential
	for i := range scaleReadSet {
		readSet = append(readSet, &tokenkeeper.Credential{Name: fmt.Sprintf("read-%03d", i), GrantType: tokenkeeper.GrantClientCredentials,
			Token:         &tokenkeeper.Token{AccessToken: "read-" + randomSecret(), TokenType: "Bearer", ExpiresAt: far},
			LastRefreshAt: now, NextRefreshAt: far.Add(-time.Hour)})
	}
	if err := im.ImportCredentials(ctx, "scale", readSet); err != nil {
		return nil, fmt.Errorf("seed the read set: %w", err)
	}
	readTargets := make([]string, scaleReadSet)
	for i := range readTargets {
		readTargets[i] = fmt.Sprintf("/v1/credentials/read-%03d/token", i)
	}

	tr := &scaleTracker{expiry: make([]int64, cfg.Credentials), perRep: make([]int, cfg.Replicas)}
	brokers, err := startScaleBrokers(ctx, w, db, store, cfg, tr)
	store = nil // the first broker owns it
	stopAll := func() {
		for _, b := range brokers {
			_ = b.Stop()
		}
		brokers = nil
	}
	defer func() { stopAll() }()
	if err != nil {
		return nil, err
	}

	// Reads without refresh load: nothing is due yet.
	runReads := func(ctx context.Context, l ReadLoad) (ReadRun, error) { return l.Run(ctx), nil }
	rep.ReadsFrom = "this process"
	if w.RunReads != nil {
		runReads, rep.ReadsFrom = w.RunReads, "a separate process"
	}
	load := ReadLoad{Base: brokers[0].URL, Key: key, Targets: readTargets, Connections: cfg.ReadConnections, Rate: cfg.ReadRate}
	logf("  reading %d tokens/s over %d connections from %s for %s without refresh load", cfg.ReadRate, cfg.ReadConnections, rep.ReadsFrom, cfg.QuietWindow)
	load.Duration = Duration(cfg.QuietWindow)
	quiet, steal, err := measureReads(ctx, runReads, load)
	if err != nil {
		return nil, fmt.Errorf("reads without refresh load: %w", err)
	}
	rep.ReadQuietP50MS, rep.ReadQuietP99MS, rep.ReadQuietErrors, rep.StealQuietPct = millis(quiet.P50), millis(quiet.P99), quiet.Errors, steal
	// The control's reads without the load: the same reads of a bare
	// handler answering what a token read answers.
	var bareLoad ReadLoad
	if cfg.BareControl {
		body, err := getBody(ctx, &http.Client{Timeout: 10 * time.Second}, brokers[0].URL+readTargets[0], key)
		if err != nil {
			return nil, fmt.Errorf("read a token for the bare handler's answer: %w", err)
		}
		url, where, stop, err := startBareHandler(ctx, w, body)
		if err != nil {
			return nil, err
		}
		defer stop()
		rep.Bare = &BareControl{In: where, BodyBytes: len(body)}
		bareLoad = load
		bareLoad.Base, bareLoad.Targets = url, readTargets[:1]
		logf("  reading a bare handler in %s the same way for %s without refresh load", where, cfg.QuietWindow)
		run, steal, err := measureReads(ctx, runReads, bareLoad)
		if err != nil {
			return nil, fmt.Errorf("bare handler reads without refresh load: %w", err)
		}
		rep.Bare.QuietP50MS, rep.Bare.QuietP99MS, rep.Bare.Errors, rep.Bare.StealQuietPct = millis(run.P50), millis(run.P99), run.Errors, steal
	}

	// Seed, with the brokers stopped: first the credentials, their
	// refresh times spread evenly over one period from the start of their
	// seeding, tokens issued one lifetime before their expiry (the ones
	// that come due before the restart are the backlog the restarted
	// brokers clear first), then the history: events that bring the
	// events table into its steady state for the window. The tokens have
	// the provider's form: a refresh replaces one by a token of the same
	// length, as in the steady state, where shorter ones (39 characters
	// for its 47) grew every row a refresh rewrote.
	stopAll()
	seedStore, err := w.OpenStore(ctx, db.database, db.key)
	if err != nil {
		return nil, err
	}
	defer func() {
		if seedStore != nil {
			seedStore.Close()
		}
	}()
	seeder, ok := seedStore.(interface {
		ImportCredentials(ctx context.Context, provider string, cs []*tokenkeeper.Credential) error
		ImportEvents(ctx context.Context, events []*tokenkeeper.Event) error
		PruneEvents(ctx context.Context, now time.Time, limit int) (int, error)
		EventRetention() sqlstore.EventRetention
	})
	if !ok {
		return nil, errors.New("bench scale: the store cannot import credentials and events in bulk")
	}
	idPrefix := randomHexID(8)
	idOf := func(i int) string { return fmt.Sprintf("%s%016x", idPrefix, i) }
	seedStart := time.Now()
	issuedOf := seededIssue(seedStart, cfg, period, lead) // as the history reckons them
	for start := 0; start < cfg.Credentials; start += importBatch {
		end := min(start+importBatch, cfg.Credentials)
		batch := make([]*tokenkeeper.Credential, 0, end-start)
		tr.mu.Lock()
		for i := start; i < end; i++ {
			issued := issuedOf(i)
			exp := issued.Add(cfg.Lifetime)
			tr.expiry[i] = exp.UnixNano()
			batch = append(batch, &tokenkeeper.Credential{ID: idOf(i), Name: fmt.Sprintf("scale-%07d", i), GrantType: tokenkeeper.GrantClientCredentials,
				Token:         &tokenkeeper.Token{AccessToken: oauthtest.NewAccessToken(), TokenType: "Bearer", ExpiresAt: exp},
				LastRefreshAt: issued, NextRefreshAt: exp.Add(-lead)})
		}
		tr.mu.Unlock()
		if err := seeder.ImportCredentials(ctx, "scale", batch); err != nil {
			return nil, fmt.Errorf("seed credentials %d to %d: %w", start, end, err)
		}
		if end%100_000 == 0 {
			logf("  seeded %d credentials in %s", end, time.Since(seedStart).Round(time.Second))
		}
	}
	credSeeded := time.Since(seedStart)
	logf("  seeded %d credentials in %s", cfg.Credentials, credSeeded.Round(time.Millisecond))
	// Where a refresh's lease leaves its row on a page the seeding filled
	// (SQLite), every credential goes through one, as in the steady state.
	if db.leaseCycle != nil {
		cycleStart := time.Now()
		n, err := db.leaseCycle(ctx, cfg.Concurrency)
		if err != nil {
			return nil, fmt.Errorf("lease cycle after seeding: %w", err)
		}
		rep.LeaseCycleCredentials = n
		logf("  leased and released the %d credentials, %d at a time, in %s", n, cfg.Concurrency, time.Since(cycleStart).Round(time.Millisecond))
	}
	// The history, once the credentials are in: the events that turn
	// old enough to be pruned from now until the window's end, which
	// planHistoryCover estimates. The window starts later than now (the
	// history, the restart, the backlog), and the events that age out
	// before it are pruned when the brokers start, before it: the window
	// prunes what it would in the steady state, no more and no less.
	histStart := time.Now()
	ret := seeder.EventRetention()
	// The vacuum cycle before the window. Where only a vacuum takes back
	// the space of dead rows (PostgreSQL), the broker vacuums a table once
	// vacuumThreshold of its rows are dead: in the steady state, just
	// after a vacuum, a churned table holds that much free space, which
	// the rows written until the next one take. A freshly seeded table
	// holds none, and would grow by a vacuum's worth of rows once, in the
	// window, which the steady state never does. So the events that aged
	// out in that cycle are seeded (first: a vacuum gives the empty pages
	// at a table's end back to the file system) and pruned, and the
	// credentials refreshed in it get new row versions (settle), before
	// the vacuum.
	span := historySpan{seedStart: seedStart, start: histStart}
	var planned int // events of history, counted
	if span.cover, planned, err = planHistoryCover(func(cover time.Duration) (int, error) {
		n, _, err := seedHistory(ctx, nil, ret, idOf, cfg, period, lead, historySpan{seedStart, histStart, cover}) // how many
		return n, err
	}, cfg, credSeeded); err != nil {
		return nil, err
	}
	rep.HistoryCoverSeconds = span.cover.Seconds()
	cycle := 0
	if db.vacuumThreshold != nil && historyAgeBinds(ret, period) {
		if cycle, err = seedPrunedCycle(ctx, seeder, ret, idOf, cfg, period, lead, span, int(db.vacuumThreshold(int64(planned)))); err != nil {
			return nil, err
		}
	}
	n, why, err := seedHistory(ctx, seeder, ret, idOf, cfg, period, lead, span)
	if err != nil {
		return nil, err
	}
	rep.HistoryEvents, rep.HistoryNote = n, why
	logf("  seeded %d events of history in %s, for a window that ends within %s of its start: %s", n, time.Since(histStart).Round(time.Millisecond), span.cover.Round(time.Second), why)
	if cycle > 0 {
		pruneStart := time.Now()
		pruned := 0
		for {
			k, err := seeder.PruneEvents(ctx, histStart, sqlstore.MaxPruneBatch)
			if err != nil {
				return nil, fmt.Errorf("prune the cycle before the window: %w", err)
			}
			if pruned += k; k == 0 {
				break
			}
		}
		if pruned != cycle {
			return nil, fmt.Errorf("bench scale: %d events seeded for the cycle before the window, %d pruned", cycle, pruned)
		}
		rep.CycleEvents = pruned
		logf("  pruned the %d events that aged out in the vacuum cycle before the window in %s", pruned, time.Since(pruneStart).Round(time.Millisecond))
	}
	// A database in its steady state has been vacuumed and analyzed
	// (PostgreSQL's advice after a bulk load): its free space map, its
	// visibility map and the planner's statistics exist before the window.
	if db.settle != nil {
		settleStart := time.Now()
		updated, err := db.settle(ctx)
		if err != nil {
			return nil, fmt.Errorf("vacuum and analyze after seeding: %w", err)
		}
		rep.CycleCredentials = updated
		logf("  updated the %d credentials refreshed last, then vacuumed and analyzed in %s", updated, time.Since(settleStart).Round(time.Millisecond))
	}
	seedStore.Close()
	seedStore = nil
	rep.SeedSeconds = time.Since(seedStart).Seconds()
	runtime.GC()
	debug.FreeOSMemory()

	// Restart on the full database: start-up figures.
	rep.SeedPeakRSSMiB = float64(peakRSS()) / (1 << 20)
	stopAll()
	resetPeakRSS()
	logf("  restarting %d broker(s) on the full database", cfg.Replicas)
	restart := time.Now()
	tr.first.Store(0)
	st, err := w.OpenStore(ctx, db.database, db.key)
	if err != nil {
		return nil, err
	}
	if brokers, err = startScaleBrokers(ctx, w, db, st, cfg, tr); err != nil {
		return nil, err
	}
	probe := fmt.Sprintf("/v1/credentials/scale-%07d/token", cfg.Credentials-1)
	hc := &http.Client{Timeout: 10 * time.Second}
	for {
		if ok, err := getOK(ctx, hc, brokers[0].URL+probe, key); err != nil {
			return nil, err
		} else if ok {
			break
		}
		if time.Since(restart) > time.Minute {
			return nil, errors.New("bench scale: no token served within a minute of the restart")
		}
		time.Sleep(5 * time.Millisecond)
	}
	rep.StartToFirstTokenSeconds = time.Since(restart).Seconds()
	for tr.first.Load() == 0 {
		if time.Since(restart) > time.Minute {
			return nil, errors.New("bench scale: no refresh within a minute of the restart")
		}
		time.Sleep(5 * time.Millisecond)
	}
	rep.StartToFirstRefreshSeconds = float64(tr.first.Load()-restart.UnixNano()) / 1e9
	// The backlog: what came due before the restart. The window starts
	// once the refreshes have caught up with the schedule, not with the
	// backlog alone: the credentials that come due while it is cleared
	// would otherwise be refreshed in the window, above the steady rate
	// (at a million on SQLite, where seeding the history takes minutes,
	// 326 refreshes a second for 303, and the events table gained the
	// difference). Caught up is within the refreshes that may be in
	// flight of every credential due by now.
	dueBy := func(t time.Time) int {
		return min(cfg.Credentials, int(float64(t.Sub(seedStart))/float64(period)*float64(cfg.Credentials)))
	}
	rep.BacklogAtStart = dueBy(restart)
	inFlight := cfg.Concurrency * cfg.Replicas
	var cleared time.Time
	for {
		tr.mu.Lock()
		done := tr.all
		tr.mu.Unlock()
		if done >= rep.BacklogAtStart && cleared.IsZero() {
			cleared = time.Now()
		}
		if !cleared.IsZero() && done >= dueBy(time.Now())-inFlight {
			break
		}
		if !cleared.IsZero() && time.Since(cleared) > 2*time.Minute {
			// A refresher slower than the schedule never catches up:
			// the window measures it as it is (refreshes late).
			logf("  the refreshes did not catch up with the schedule within 2 minutes of clearing the backlog (%d of %d due); measuring anyway", done, dueBy(time.Now()))
			break
		}
		if time.Since(restart) > 10*time.Minute {
			return nil, fmt.Errorf("bench scale: the backlog of %d credentials due at the restart was not cleared within 10 minutes", rep.BacklogAtStart)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rep.BacklogClearedSeconds = time.Since(restart).Seconds()
	logf("  first token served %.3fs after the restart, first refresh committed after %.3fs, the %d credentials due at the restart refreshed and the schedule caught up after %.3fs; measuring for %s",
		rep.StartToFirstTokenSeconds, rep.StartToFirstRefreshSeconds, rep.BacklogAtStart, rep.BacklogClearedSeconds, cfg.Window)

	// The window.
	sizeStart, err := db.size(ctx)
	if err != nil {
		return nil, fmt.Errorf("database size: %w", err)
	}
	eventsStart, err1 := db.rows(ctx, "events")
	auditStart, err2 := db.rows(ctx, "audit")
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	ioStart := writtenBytes()
	callsStart := sum(idp.Stats().TokenRequests)
	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
	}
	windowStart := time.Now()
	tr.mu.Lock()
	tr.measuring = true
	tr.callFrom = windowStart.UnixNano()
	tr.mu.Unlock()
	load.Base, load.Duration = brokers[0].URL, Duration(cfg.Window)
	loaded, steal, err := measureReads(ctx, runReads, load)
	if err != nil {
		return nil, fmt.Errorf("reads under refresh load: %w", err)
	}
	rep.StealLoadedPct = steal
	elapsed := time.Since(windowStart)
	if cfg.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	calls := sum(idp.Stats().TokenRequests) - callsStart
	written := writtenBytes() - ioStart
	tr.mu.Lock()
	tr.measuring = false
	end := time.Now().UnixNano()
	expired := 0
	for _, e := range tr.expiry {
		if e < end {
			expired++
		}
	}
	rep.Refreshes, rep.LateRefreshes, rep.FailedAttempts, rep.Fenced = tr.ok, tr.late, tr.failed, tr.fenced
	rep.RefreshesPerReplica = slices.Clone(tr.perRep)
	lags := slices.Clone(tr.lags)
	tr.callTo = end
	tr.mu.Unlock()
	rep.PeakRSSMiB = float64(peakRSS()) / (1 << 20)
	if short := time.Unix(0, end).Sub(histStart.Add(span.cover)); short > 0 && historyAgeBinds(ret, period) {
		// Past the history, nothing ages out: the events table gains
		// every refresh's event.
		rep.HistoryShortSeconds = short.Seconds()
		logf("  the window ended %s after the end of the history seeded for it: database growth is overstated", short.Round(time.Second))
	}
	sizeEnd, err := db.size(ctx)
	if err != nil {
		return nil, fmt.Errorf("database size: %w", err)
	}
	eventsEnd, err1 := db.rows(ctx, "events")
	auditEnd, err2 := db.rows(ctx, "audit")
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	rep.EventRowsAdded, rep.AuditRowsAdded = eventsEnd-eventsStart, auditEnd-auditStart
	// The control's reads beside the refresh load, which goes on.
	if cfg.BareControl {
		logf("  reading the bare handler for %s beside the refresh load", cfg.QuietWindow)
		run, steal, err := measureReads(ctx, runReads, bareLoad)
		if err != nil {
			return nil, fmt.Errorf("bare handler reads beside the refresh load: %w", err)
		}
		rep.Bare.LoadedP50MS, rep.Bare.LoadedP99MS, rep.Bare.StealLoadedPct = millis(run.P50), millis(run.P99), steal
		rep.Bare.Errors += run.Errors
	}
	// Provider calls per token: the calls the provider received in the
	// window over the successful attempts whose call started in it, once
	// the brokers have stopped and committed the ones in flight.
	stopAll()
	tr.mu.Lock()
	okCalls := tr.okCalls
	tr.mu.Unlock()
	slices.Sort(lags)
	rep.ExpiredUnrefreshed = expired
	rep.RefreshesPerSecond = float64(rep.Refreshes) / elapsed.Seconds()
	rep.ProviderCalls = calls
	rep.RefreshedBeforeExpiryPct, _ = refreshRatios(rep.Refreshes, rep.LateRefreshes, expired, calls)
	if okCalls > 0 {
		rep.ProviderCallsPerToken = float64(calls) / float64(okCalls)
	}
	rep.LagP1Seconds, rep.LagP50Seconds, rep.LagP99Seconds = percentile(lags, 0.01).Seconds(), percentile(lags, 0.5).Seconds(), percentile(lags, 0.99).Seconds()
	rep.ReadLoadedP50MS, rep.ReadLoadedP99MS, rep.ReadLoadedErrors = millis(loaded.P50), millis(loaded.P99), loaded.Errors
	rep.ReadLoadedRPS = loaded.RequestsPerSecond
	rep.DatabaseBytesStart, rep.DatabaseBytesEnd = sizeStart, sizeEnd
	growth := float64(sizeEnd-sizeStart) / elapsed.Seconds()
	rep.DatabaseGrowthPerHour = growth * 3600 / (1 << 20)
	rep.DatabaseGrowthPerDay = growth * 86400 / (1 << 30)
	if !isPostgresURL(cfg.Database) && written >= 0 {
		rep.WrittenBytes = written
		if rep.Refreshes > 0 {
			rep.WrittenBytesPerRefresh = float64(written) / float64(rep.Refreshes)
		}
	}
	return rep, nil
}

// historySpan is what a history is seeded for: the credentials were
// seeded at seedStart (credential i's first refresh is a share i+1 of a
// period later, as Scale seeds them), and a window starts at start or
// later and ends within cover of start.
type historySpan struct {
	seedStart, start time.Time
	cover            time.Duration
}

// planHistoryCover returns how long after the start of the history's
// seeding the window may end: after the seeding itself, the restart, the
// backlog (what came due meanwhile) and the window, with a margin. It
// estimates them from how long the credentials took to seed (seeded):
// an event of history as half a credential's time, and the backlog as
// three tenths of everything seeded (on SQLite at a million, 0.48 and
// 0.19 measured; less on PostgreSQL). A longer cover means more
// credentials with a history, so it counts the events of each cover
// (count) until the estimate stays within it, and returns the cover with
// its count. Scale reports a window that ran past it.
func planHistoryCover(count func(cover time.Duration) (int, error), cfg ScaleConfig, seeded time.Duration) (time.Duration, int, error) {
	const margin = 3 * time.Minute
	perEvent := float64(seeded) / float64(max(cfg.Credentials, 1)) / 2
	cover := cfg.Window + 5*time.Minute
	for round := 0; ; round++ {
		n, err := count(cover)
		if err != nil {
			return 0, 0, err
		}
		history := time.Duration(float64(n) * perEvent)
		start := history + 15*time.Second + (seeded+history)*3/10
		need := (start + cfg.Window + margin).Round(time.Second)
		if need <= cover || round == 8 {
			return cover, n, nil
		}
		cover = need
	}
}

// seedHistory seeds the refresh events that bring the events table into
// its steady state for a window in span, given the store's retention.
// When the age limit binds (a credential refreshes fewer times within it
// than the count limit), the credentials with a history are those that
// the window touches: those with an event that reaches that age from
// span.start to span.cover after it, which the pruner deletes as new
// ones arrive, and those refreshed in that time, whose new event is
// indexed among their older ones. Each of them gets its whole history
// within the age limit, as in the steady state: an index page then holds
// the events of few credentials, and a refresh adds one to them, where a
// page of one event each for a hundred credentials refreshed within a
// second would split, which the steady state never does. When the count
// limit binds, every credential gets that many events, of which each new
// one pushes out the oldest. Credential i's history ends with the
// refresh that issued its seeded token, one period apart; the events are
// imported oldest first (importInTimeOrder; with im nil, only counted).
// It returns how many it seeded and why.
func seedHistory(ctx context.Context, im interface {
	ImportEvents(ctx context.Context, events []*tokenkeeper.Event) error
}, ret sqlstore.EventRetention, idOf func(int) string, cfg ScaleConfig, period, lead time.Duration, span historySpan) (int, string, error) {
	ageBinds := historyAgeBinds(ret, period)
	from, to := span.start.Add(-ret.RefreshMaxAge-time.Minute), span.start
	why := fmt.Sprintf("the count limit binds: %d events per credential", ret.RefreshCount)
	if ageBinds {
		from = span.start.Add(-ret.RefreshMaxAge)
		to = from.Add(span.cover)
	}
	// The credentials with a history.
	issuedOf := seededIssue(span.seedStart, cfg, period, lead)
	touched := make([]bool, cfg.Credentials)
	with := 0
	for i := range cfg.Credentials {
		issued := issuedOf(i)
		if ageBinds {
			pruned := false
			for t := issued.Add(-period); !t.Before(from); t = t.Add(-period) {
				if !t.After(to) {
					pruned = true
					break
				}
			}
			refresh := issued.Add(period)
			for refresh.Before(span.start) {
				refresh = refresh.Add(period)
			}
			if !pruned && refresh.After(span.start.Add(span.cover)) {
				continue
			}
		}
		touched[i] = true
		with++
	}
	total, err := importInTimeOrder(ctx, im, idOf, cfg, period, issuedOf, from, func(i, k int) bool {
		return touched[i] && (ageBinds || k < ret.RefreshCount)
	})
	if err != nil {
		return total, why, fmt.Errorf("seed history: %w", err)
	}
	if ageBinds {
		why = fmt.Sprintf("the age limit binds: all events younger than %s of the %d credentials whose events reach that age or that are refreshed during the window", ret.RefreshMaxAge, with)
	}
	return total, why, nil
}

// seededIssue returns the time at which credential i's seeded token was
// issued, for credentials seeded at seedStart: its refresh is at most a
// period after seedStart, spread evenly (as Scale seeds them).
func seededIssue(seedStart time.Time, cfg ScaleConfig, period, lead time.Duration) func(i int) time.Time {
	return func(i int) time.Time {
		next := seedStart.Add(time.Duration(float64(period) * float64(i+1) / float64(cfg.Credentials)))
		return next.Add(lead - cfg.Lifetime)
	}
}

// seededEvent is the event of credential i's refresh at t, as seeded.
func seededEvent(idOf func(int) string, i int, t time.Time, msg string, latency time.Duration) *tokenkeeper.Event {
	return &tokenkeeper.Event{CredentialID: idOf(i), CredentialName: fmt.Sprintf("scale-%07d", i), Time: t,
		Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeOK, Message: msg, Latency: latency, Actor: "refresher:seeded"}
}

// historyAgeBinds reports whether a credential refreshed every period has
// fewer refresh events within the retention's age limit than its count
// limit: then the age limit prunes them.
func historyAgeBinds(ret sqlstore.EventRetention, period time.Duration) bool {
	return int(ret.RefreshMaxAge/period) <= ret.RefreshCount
}

// seedPrunedCycle seeds the count refresh events that aged out in the
// vacuum cycle before the window: those that turned the age limit old in
// the count/rate seconds before span.start, at rate = credentials per
// period, each of its credential's history (one period apart, as
// seedHistory's). It returns how many it seeded: the store's pruning at
// span.start deletes just these.
func seedPrunedCycle(ctx context.Context, im interface {
	ImportEvents(ctx context.Context, events []*tokenkeeper.Event) error
}, ret sqlstore.EventRetention, idOf func(int) string, cfg ScaleConfig, period, lead time.Duration, span historySpan, count int) (int, error) {
	to := span.start.Add(-ret.RefreshMaxAge)
	from := to.Add(-time.Duration(float64(count) / float64(cfg.Credentials) * float64(period)))
	issuedOf := seededIssue(span.seedStart, cfg, period, lead)
	total, err := importInTimeOrder(ctx, im, idOf, cfg, period, issuedOf, from, func(i, k int) bool {
		return issuedOf(i).Add(-time.Duration(k) * period).Before(to)
	})
	if err != nil {
		return total, fmt.Errorf("seed the cycle before the window: %w", err)
	}
	return total, nil
}

// importInTimeOrder imports, oldest first as the broker writes them, the
// refresh events of credential i at issuedOf(i) less k periods, for every
// k with the event not before from and keep(i, k). A store prunes the
// oldest events first: in time order, they lie together in the table and
// its indexes, and their pages empty as they would in the steady state.
// For a given k, the events of credentials 0 to n-1 lie within one
// period, before those of k-1: k from the largest down, i upwards, is time
// order. With im nil, it only counts them.
func importInTimeOrder(ctx context.Context, im interface {
	ImportEvents(ctx context.Context, events []*tokenkeeper.Event) error
}, idOf func(int) string, cfg ScaleConfig, period time.Duration, issuedOf func(i int) time.Time, from time.Time, keep func(i, k int) bool) (int, error) {
	msg := fmt.Sprintf("new token valid for %s", cfg.Lifetime)
	newest := issuedOf(cfg.Credentials - 1)
	kmax := 0
	for !newest.Add(-time.Duration(kmax+1) * period).Before(from) {
		kmax++
	}
	total := 0
	var batch []*tokenkeeper.Event
	for k := kmax; k >= 0; k-- {
		for i := range cfg.Credentials {
			t := issuedOf(i).Add(-time.Duration(k) * period)
			if t.Before(from) || !keep(i, k) {
				continue
			}
			if im == nil {
				total++
				continue
			}
			batch = append(batch, seededEvent(idOf, i, t, msg, cfg.Latency))
			if len(batch) >= 5*importBatch {
				if err := im.ImportEvents(ctx, batch); err != nil {
					return total, err
				}
				total += len(batch)
				batch = batch[:0]
			}
		}
	}
	if len(batch) > 0 {
		if err := im.ImportEvents(ctx, batch); err != nil {
			return total, err
		}
		total += len(batch)
	}
	return total, nil
}

// randomHexID returns n random bytes in hexadecimal.
func randomHexID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// scaleBroker is one broker of a Scale run.
type scaleBroker = Broker

// startScaleBrokers starts cfg.Replicas brokers: the first on first, the
// others each on a store of its own on the same database. On error, the
// ones started are returned too, for the caller to stop.
func startScaleBrokers(ctx context.Context, w Wiring, db *benchStore, first tokenkeeper.Store, cfg ScaleConfig, tr *scaleTracker) ([]*scaleBroker, error) {
	var out []*scaleBroker
	for i := range cfg.Replicas {
		st := first
		if i > 0 {
			var err error
			if st, err = w.OpenStore(ctx, db.database, db.key); err != nil {
				return out, err
			}
		}
		b, err := w.StartBroker(ctx, st, BrokerConfig{Concurrency: cfg.Concurrency, ProviderTimeout: 10 * time.Second,
			DefaultLifetime: time.Hour, ShutdownTimeout: 10 * time.Second, OnAttempt: tr.onAttempt(i)})
		if err != nil {
			st.Close()
			return out, err
		}
		out = append(out, b)
	}
	return out, nil
}

// measureReads runs l with run and returns what it measured and the share
// of CPU time the host stole meanwhile (-1: unknown).
func measureReads(ctx context.Context, run func(context.Context, ReadLoad) (ReadRun, error), l ReadLoad) (ReadRun, float64, error) {
	from, fromOK := readCPUTimes()
	r, err := run(ctx, l)
	to, toOK := readCPUTimes()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return r, stealPct(from, fromOK, to, toOK), err
}

// get sends a GET of url with the API key and returns the answer's status
// and body.
func get(ctx context.Context, hc *http.Client, url, key string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// getBody returns the body of a GET of url with the API key, which must
// answer 200.
func getBody(ctx context.Context, hc *http.Client, url, key string) ([]byte, error) {
	status, body, err := get(ctx, hc, url, key)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", url, status, http.StatusText(status))
	}
	return body, nil
}

// getOK reports whether a GET of url with the API key answers 200; a
// request that fails is not an error unless ctx is done.
func getOK(ctx context.Context, hc *http.Client, url, key string) (bool, error) {
	status, _, err := get(ctx, hc, url, key)
	if err != nil {
		return false, ctx.Err()
	}
	return status == http.StatusOK, nil
}

// ReadLoad is the token reads of a Scale run: GET Base+target for each of
// Targets in turn, with the API key Key, from Connections keep-alive
// connections for Duration, Rate requests per second in all.
type ReadLoad struct {
	Base        string   `json:"base"`
	Key         string   `json:"key"`
	Targets     []string `json:"targets"`
	Connections int      `json:"connections"`
	Rate        int      `json:"rate"`
	Duration    Duration `json:"duration"`
}

// Run drives l from this process, each connection sending at its own even
// pace (and at once when it is behind), and measures the latencies.
func (l ReadLoad) Run(ctx context.Context) ReadRun {
	if l.Connections < 1 || l.Rate < 1 || len(l.Targets) == 0 {
		return ReadRun{}
	}
	return pacedReads(ctx, l.Base, l.Key, l.Targets, l.Connections, l.Rate, time.Duration(l.Duration))
}

// pacedReads is ReadLoad.Run.
func pacedReads(ctx context.Context, base, key string, targets []string, conns, rate int, d time.Duration) ReadRun {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	interval := time.Duration(float64(conns) / float64(rate) * float64(time.Second))
	var total, errs atomic.Int64
	lats := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range conns {
		wg.Go(func() {
			tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			// Spread the connections' first requests over one interval.
			next := start.Add(interval * time.Duration(c) / time.Duration(conns))
			local := make([]time.Duration, 0, int(d/interval)+1)
			for n := c; ctx.Err() == nil; n += conns {
				if wait := time.Until(next); wait > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(wait):
					}
					if ctx.Err() != nil {
						break
					}
				}
				next = next.Add(interval)
				req, _ := http.NewRequestWithContext(ctx, "GET", base+targets[n%len(targets)], nil)
				req.Header.Set("Authorization", "Bearer "+key)
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs.Add(1)
				}
				total.Add(1)
				local = append(local, time.Since(t0))
			}
			lats[c] = local
		})
	}
	wg.Wait()
	all := slices.Concat(lats...)
	slices.Sort(all)
	return ReadRun{Requests: total.Load(), Errors: errs.Load(), RequestsPerSecond: float64(total.Load()) / time.Since(start).Seconds(),
		P50: percentile(all, 0.5), P99: percentile(all, 0.99)}
}

// stealNote is the host's steal in the report's text: nothing where it is
// unknown.
func stealNote(pct float64) string {
	if pct < 0 {
		return ""
	}
	return fmt.Sprintf("; host stole %.2f%% of CPU time meanwhile", pct)
}

// WriteText prints the report as the command does without --json.
func (r *ScaleReport) WriteText(w io.Writer) error {
	var tw textWriter
	tw.printf("bench scale on %s\n", r.Database)
	tw.printf("  settings                        %d credentials, token lifetime %s (refreshed %s before expiry), provider latency %s, concurrency %d, %d replica(s)\n",
		r.Credentials, r.Lifetime, r.Lead, r.ProviderLatency, r.Concurrency, r.Replicas)
	tw.printf("  reads                           %d/s over %d keep-alive connections from %s; %s without refresh load, then throughout the window\n",
		r.ReadRate, r.ReadConnections, r.ReadsFrom, r.QuietWindow)
	tw.printf("  seeding                         %.1fs; %d events of history (%s), for a window that ends within %s of the start of their seeding\n",
		r.SeedSeconds, r.HistoryEvents, r.HistoryNote, time.Duration(r.HistoryCoverSeconds*float64(time.Second)).Round(time.Second))
	if r.HistoryShortSeconds > 0 {
		tw.printf("  HISTORY SHORT                   the window ran %.0fs past the history seeded for it: nothing aged out then, and the database growth below is overstated\n", r.HistoryShortSeconds)
	}
	if r.LeaseCycleCredentials > 0 {
		tw.printf("  lease cycle before the window   %d credentials leased and released once, as a refresh does: their pages hold the slack of the steady state\n", r.LeaseCycleCredentials)
	}
	if r.CycleEvents > 0 || r.CycleCredentials > 0 {
		tw.printf("  vacuum cycle before the window  %d events aged out and pruned, %d credentials given new row versions, then vacuumed: the free space of the steady state\n",
			r.CycleEvents, r.CycleCredentials)
	}
	tw.printf("  start to first token served     %.3fs\n", r.StartToFirstTokenSeconds)
	tw.printf("  start to first refresh          %.3fs (the schedule is the database's index: nothing to load)\n", r.StartToFirstRefreshSeconds)
	tw.printf("  backlog at start                %d credentials due; they were refreshed and the schedule caught up %.3fs after the start\n", r.BacklogAtStart, r.BacklogClearedSeconds)
	tw.printf("  measured                        %s\n", r.Window)
	tw.printf("  refreshes                       %d (%.1f/s), %d failed attempts, %d fenced\n", r.Refreshes, r.RefreshesPerSecond, r.FailedAttempts, r.Fenced)
	if r.Replicas > 1 {
		tw.printf("  refreshes per replica           %v\n", r.RefreshesPerReplica)
	}
	tw.printf("  refreshed before expiry         %.2f%% (%d late, %d expired unrefreshed)\n", r.RefreshedBeforeExpiryPct, r.LateRefreshes, r.ExpiredUnrefreshed)
	tw.printf("  provider calls per token        %.3f (%d calls in the window)\n", r.ProviderCallsPerToken, r.ProviderCalls)
	tw.printf("  refresh lag before expiry       p1 %.2fs, p50 %.2fs, p99 %.2fs\n", r.LagP1Seconds, r.LagP50Seconds, r.LagP99Seconds)
	tw.printf("  peak RSS                        %.0f MiB (seeding: %.0f MiB)\n", r.PeakRSSMiB, r.SeedPeakRSSMiB)
	ratio := math.NaN()
	if r.ReadQuietP99MS > 0 {
		ratio = r.ReadLoadedP99MS / r.ReadQuietP99MS
	}
	tw.printf("  token reads, no refresh load    p50 %.2fms, p99 %.2fms, %d errors%s\n", r.ReadQuietP50MS, r.ReadQuietP99MS, r.ReadQuietErrors, stealNote(r.StealQuietPct))
	tw.printf("  token reads, under load         p50 %.2fms, p99 %.2fms (%.2f× the p99 without), %d errors, %.0f req/s%s\n",
		r.ReadLoadedP50MS, r.ReadLoadedP99MS, ratio, r.ReadLoadedErrors, r.ReadLoadedRPS, stealNote(r.StealLoadedPct))
	if b := r.Bare; b != nil {
		bareRatio := math.NaN()
		if b.QuietP99MS > 0 {
			bareRatio = b.LoadedP99MS / b.QuietP99MS
		}
		tw.printf("  bare handler, no refresh load   p50 %.2fms, p99 %.2fms (the same reads of a bare net/http handler in %s answering %d bytes)%s\n",
			b.QuietP50MS, b.QuietP99MS, b.In, b.BodyBytes, stealNote(b.StealQuietPct))
		tw.printf("  bare handler, under load        p50 %.2fms, p99 %.2fms (%.2f× the p99 without; read for %s after the window, beside the same refresh load), %d errors%s\n",
			b.LoadedP50MS, b.LoadedP99MS, bareRatio, r.QuietWindow, b.Errors, stealNote(b.StealLoadedPct))
	}
	tw.printf("  database                        %.1f MiB → %.1f MiB: %.1f MiB/hour, %.2f GiB/day extrapolated\n",
		float64(r.DatabaseBytesStart)/(1<<20), float64(r.DatabaseBytesEnd)/(1<<20), r.DatabaseGrowthPerHour, r.DatabaseGrowthPerDay)
	tw.printf("  rows added in the window        events %+d (inserted less pruned), audit records %+d (the token reads')\n", r.EventRowsAdded, r.AuditRowsAdded)
	if r.WrittenBytes > 0 {
		tw.printf("  written to disk                 %.1f MiB, %.1f KB per refresh (/proc/self/io; the token reads' audit records included)\n", float64(r.WrittenBytes)/(1<<20), r.WrittenBytesPerRefresh/1000)
	} else {
		tw.printf("  written to disk                 not measured (PostgreSQL writes in its own processes)\n")
	}
	return tw.flush(w)
}
