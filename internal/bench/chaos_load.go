package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// chaos runs the readers, the kills and the database restarts for the
// duration, stops the replicas and evaluates.
func (r *chaosRun) chaos(ctx context.Context) (*ChaosReport, error) {
	cfg := r.cfg
	before := r.idp.Stats()
	start := time.Now()
	wctx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()

	var wg sync.WaitGroup
	// Readers, paced by one ticker shared by all.
	pace := make(chan struct{})
	wg.Go(func() {
		t := time.NewTicker(time.Second / time.Duration(cfg.ReadRate))
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
		MaxIdleConnsPerHost: cfg.Consumers, IdleConnTimeout: 30 * time.Second, DisableCompression: true,
	}}
	defer hc.CloseIdleConnections()
	var readSeq atomic.Int64
	for range cfg.Consumers {
		wg.Go(func() {
			for {
				select {
				case <-wctx.Done():
					return
				case <-pace:
				}
				withResource := cfg.ResourceEvery > 0 && readSeq.Add(1)%int64(cfg.ResourceEvery) == 0
				r.read(wctx, hc, r.replicas[mrand.IntN(len(r.replicas))], r.names[mrand.IntN(len(r.names))], withResource)
			}
		})
	}
	// Chaos: kills, and restarts of replicas that died by themselves.
	var chaosErr error
	wg.Go(func() { chaosErr = r.killLoop(ctx, wctx) })
	if cfg.DBRestartEvery > 0 {
		wg.Go(func() { r.dbRestartLoop(ctx, wctx) })
	}
	wg.Go(func() { r.progressLoop(wctx, start, before) })
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
			if rep.stop(syscall.SIGTERM, termWait) {
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

// progressLoop reports the run's counters every tenth of the duration
// (5s to 1m) until wctx ends.
func (r *chaosRun) progressLoop(wctx context.Context, start time.Time, before oauthtest.Stats) {
	every := min(max(r.cfg.Duration/10, 5*time.Second), time.Minute)
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
		failed, dbRestarts := len(r.failed), len(r.dbOutages)
		r.mu.Unlock()
		r.progress("%s: %d reads (%d failed), %d kills, %d database restarts, %d reuse detections, %d grace reuses",
			time.Since(start).Round(time.Second), r.reads.Load(), failed, r.kills.Load(), dbRestarts,
			st.ReuseDetections-before.ReuseDetections, st.GraceReuses-before.GraceReuses)
	}
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

// killLoop kills one replica every cfg.KillEvery, round robin, and restarts
// it; it also restarts a replica that exited by itself. Restarts use ctx,
// not wctx, so that one in progress at the end of the run completes.
func (r *chaosRun) killLoop(ctx, wctx context.Context) error {
	check := time.NewTicker(time.Second)
	defer check.Stop()
	var kill <-chan time.Time
	if r.cfg.KillEvery > 0 {
		t := time.NewTicker(r.cfg.KillEvery)
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
	if rep.stop(r.cfg.signal, wait) {
		r.escalated.Add(1)
	}
	r.kills.Add(1)
	if err := rep.start(ctx, r.replicaCommand(), 90*time.Second); err != nil {
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
		p := rep.takeIfDead()
		if p == nil {
			continue
		}
		r.unexpectedExits.Add(1)
		r.note("replica %d exited by itself at %s (%s); see %s", rep.index, p.exitedAt.UTC().Format(time.RFC3339), p.cmd.ProcessState, rep.log.Name())
		r.out.open(&r.out.replica[rep.index], p.exitedAt)
		if err := rep.start(ctx, r.replicaCommand(), 90*time.Second); err != nil {
			return err
		}
		r.out.close(&r.out.replica[rep.index], time.Now())
	}
	return nil
}

// dbRestartLoop restarts PostgreSQL every cfg.DBRestartEvery and measures
// how long it was down and how long refreshes took to resume.
func (r *chaosRun) dbRestartLoop(ctx, wctx context.Context) {
	t := time.NewTicker(r.cfg.DBRestartEvery)
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
		out, err := exec.CommandContext(cctx, r.cfg.DBRestartCommand[0], r.cfg.DBRestartCommand[1:]...).CombinedOutput()
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
		if execPG(ctx, r.cfg.Database, 2*time.Second, "SELECT 1") == nil {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// snapshot copies what the readers and the chaos loops recorded.
func (r *chaosRun) snapshot() (failed []failedRead, bad []badRead, readLatency, restarts, dbOutages, dbResumes []time.Duration, notes []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.failed), slices.Clone(r.bad), slices.Clone(r.readLatency), slices.Clone(r.restartTimes),
		slices.Clone(r.dbOutages), slices.Clone(r.dbResumes), slices.Clone(r.notes)
}
