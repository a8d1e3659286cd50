package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// This file holds the checks of a chaos run against the provider's own
// records: credentials lost, refreshes answered but never committed, reads
// that failed or returned a token the provider does not accept, and
// secrets in the replicas' logs.

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
	kind string // "expired", "revoked", "unknown" or "rejected by /resource"
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

func overlapsAny(ws []window, a, b time.Time, settle time.Duration) bool {
	for _, w := range ws {
		if w.overlaps(a, b, settle) {
			return true
		}
	}
	return false
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

// classify blames each failed read on a replica outage, a database outage,
// a lost credential, or nothing, in that order, and counts them in rep.
func (o *outages) classify(failed []failedRead, lost map[string]bool, rep *ChaosReport) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, f := range failed {
		switch {
		case overlapsAny(o.replica[f.replica], f.start, f.end, replicaSettle):
			rep.FailedReadsKilledReplica++
		case overlapsAny(o.db, f.start, f.end, dbSettle):
			rep.FailedReadsDBRestart++
		case lost[f.name]:
			rep.FailedReadsLostCredential++
		default:
			rep.FailedReadsOther++
			rep.FailedReadsOtherCauses[f.cause]++
		}
	}
}

// credentialCheck is the comparison of one credential in the store with the
// provider's records of its refresh token family.
type credentialCheck struct {
	lost, needsReauth, unknown, revoked, stale bool
	// uncommitted is method (a): the family's refresh tokens never
	// presented, less the one the store holds.
	uncommitted int
	// byEvents is method (b): the provider's successful refreshes of the
	// family less the store's committed refreshes.
	byEvents  int
	fenced    int  // answers discarded because the replica was fenced out
	truncated bool // the store dropped events: method (b) is unreliable
}

// checkCredential compares c with the provider's records: info about its
// stored refresh token (known: the provider issued it), the token's family,
// and c's events (newest first, at most retention+1 asked for). With a
// grace period a superseded refresh token is not a loss.
func checkCredential(c *tokenkeeper.Credential, info oauthtest.RefreshTokenInfo, known bool, fam oauthtest.FamilyInfo,
	events []*tokenkeeper.Event, grace time.Duration, retention int) credentialCheck {
	var k credentialCheck
	if c.Status == tokenkeeper.StatusNeedsReauth {
		k.needsReauth, k.lost = true, true
	}
	switch {
	case !known:
		k.unknown, k.lost = true, true
	case info.Revoked:
		k.revoked, k.lost = true, true
	case !info.Current:
		k.stale = true
		if grace == 0 {
			k.lost = true
		}
	}
	k.uncommitted = fam.Unpresented
	if known && info.Presentations == 0 {
		k.uncommitted--
	}
	committed := 0
	for _, ev := range events {
		if ev.Kind != tokenkeeper.EventRefresh {
			continue
		}
		switch {
		case ev.Outcome == tokenkeeper.OutcomeOK:
			committed++
		case ev.Outcome == tokenkeeper.OutcomeFenced && ev.ErrorCode == "":
			k.fenced++
		}
	}
	k.byEvents = fam.Generation - 1 - committed
	k.truncated = len(events) >= retention
	return k
}

// add counts k for credential name in rep, and marks it in lost.
func (k credentialCheck) add(name string, rep *ChaosReport, lost map[string]bool) {
	if k.needsReauth {
		rep.NeedsReauth++
	}
	switch {
	case k.unknown:
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s: the store holds a refresh token the provider never issued", name))
	case k.revoked:
		rep.FamiliesRevoked++
	case k.stale:
		rep.StaleRefreshTokens++
	}
	if k.truncated {
		rep.EventsTruncated++
	} else if k.byEvents != k.uncommitted {
		rep.MethodsDisagree++
	}
	rep.UncommittedAnswers += k.uncommitted
	rep.UncommittedByEvents += k.byEvents
	rep.FencedAnswers += k.fenced
	rep.CutRefreshes += max(k.uncommitted-k.fenced, 0)
	if k.uncommitted > 0 {
		rep.CredentialsWithCuts++
	}
	if k.lost {
		rep.CredentialsLost++
		lost[name] = true
		if k.uncommitted == 0 {
			rep.UnexplainedLosses++
		}
	}
}

// evaluate compares the store with the provider and builds the report.
func (r *chaosRun) evaluate(ctx context.Context, before, after oauthtest.Stats, elapsed time.Duration) (*ChaosReport, error) {
	cfg := r.cfg
	rep := &ChaosReport{
		Replicas: cfg.Replicas, Credentials: cfg.Credentials, Lifetime: Duration(cfg.Lifetime), Duration: Duration(cfg.Duration),
		KillEvery: Duration(cfg.KillEvery), Signal: cfg.signalName, Grace: Duration(cfg.Grace), DBRestartEvery: Duration(cfg.DBRestartEvery),
		RefreshLead: Duration(cfg.RefreshLead), ProviderTimeout: Duration(cfg.ProviderTimeout), Lease: Duration(cfg.lease),
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
	if lifetimes := float64(cfg.Credentials) * elapsed.Seconds() / cfg.Lifetime.Seconds(); lifetimes > 0 {
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
		var events []*tokenkeeper.Event
		err := retryStore(ctx, func(ctx context.Context) (err error) {
			events, err = r.store.Events(ctx, c.Name, r.w.EventRetention+1)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("read events for the checks: %w", err)
		}
		checkCredential(c, info, known, families[info.Family], events, cfg.Grace, r.w.EventRetention).add(c.Name, rep, lost)
	}
	if len(creds) != cfg.Credentials {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the store holds %d credentials, not %d", len(creds), cfg.Credentials))
	}
	// Every reuse detection needs a token presented after its successor
	// was issued: a credential with an answer never committed.
	rep.UnexplainedReuses = max(rep.ReuseDetections-rep.CredentialsWithCuts, 0)

	// Reads.
	failed, bad, lat, restarts, dbo, dbr, notes := r.snapshot()
	rep.Notes = append(rep.Notes, notes...)
	slices.Sort(lat)
	rep.ReadP50MS, rep.ReadP99MS = millis(percentile(lat, 0.5)), millis(percentile(lat, 0.99))
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
	r.out.classify(failed, lost, rep)
	countBadReads(bad, lost, rep)
	rep.SecretsInLogs = r.scanLogs()
	rep.judge()
	return rep, nil
}

// countBadReads counts the tokens served that the provider does not
// accept, by kind, and those of them for lost credentials.
func countBadReads(bad []badRead, lost map[string]bool, rep *ChaosReport) {
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
		n += countSecretLines(f, r.clientSecret, r.masterKey)
		f.Close()
	}
	return n
}

// countSecretLines counts the lines of f holding a token, an API key or one
// of the given secrets.
func countSecretLines(f io.Reader, secrets ...string) int {
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if secretRE.MatchString(line) || slices.ContainsFunc(secrets, func(s string) bool { return s != "" && strings.Contains(line, s) }) {
			n++
		}
	}
	return n
}
