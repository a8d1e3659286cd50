// Package agent keeps files fresh with access tokens from a tokenkeeper
// broker, for programs that can only read a token from a file.
//
// Each sink of a Config names a credential and a file. The agent reads the
// credential's token from the broker (GET /v1/credentials/{name}/token with
// an API key, or the broker's /oauth2/token as a service client), writes it
// to the file through a template, and renews it ahead of its expiry with a
// client.TokenSource. Every write is atomic: a temporary file in the same
// directory, synced, renamed over the file, and the directory synced.
//
// At a token's advertised expiry the runner asks for the next token. The
// broker replaces a token a margin after the expiry it advertises and
// answers as soon as the replacement is committed, so the file goes from the
// old token to the new one while the old one still works. If the broker
// cannot be reached, or no replacement comes within replacementWait, the
// file is removed or emptied at once, as the sink's on_expiry says, so that a
// file never holds an expired token; the next token obtained is written
// again. The agent does the same when it stops, since nothing
// renews the file afterwards.
//
// An Agent is safe for concurrent use: Apply and Stop may be called from any
// goroutine, and are serialized.
package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper/client"
)

// Options configure an Agent. The zero value is usable.
type Options struct {
	// Logger receives the agent's log; nil discards. No token or secret is
	// ever logged.
	Logger *slog.Logger
	// CommandOutput receives the standard output and error of the sinks'
	// commands; nil discards them.
	CommandOutput io.Writer
	// HTTPClient reaches the broker; nil means a client with a 30 s timeout.
	HTTPClient *http.Client
	// BackoffMin and BackoffMax bound the delay between attempts while the
	// broker fails (defaults 500 ms and 15 s).
	BackoffMin, BackoffMax time.Duration
	// CheckTimeout bounds the first request of a new sink, which checks that
	// its credential exists (default 10 s).
	CheckTimeout time.Duration
	// CommandTimeout bounds each run of a sink's command (default 30 s).
	CommandTimeout time.Duration
	// PermanentRetry is how long a sink waits before trying its credential
	// again after the broker refused it for good (a deleted credential, a
	// revoked key; default 30 s).
	PermanentRetry time.Duration
}

// Agent keeps the files of a Config fresh. Create it with New, give it a
// configuration with Apply (again to reload), and Stop it.
type Agent struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex         // serializes Apply and Stop; guards the fields below
	runners map[string]*runner // by sinkKey
	stopped bool
}

// New returns an Agent with no sinks.
func New(opts Options) *Agent {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.CommandOutput == nil {
		opts.CommandOutput = io.Discard
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = 500 * time.Millisecond
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = max(15*time.Second, opts.BackoffMin)
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = 10 * time.Second
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = 30 * time.Second
	}
	if opts.PermanentRetry <= 0 {
		opts.PermanentRetry = 30 * time.Second
	}
	return &Agent{opts: opts, log: opts.Logger, runners: map[string]*runner{}}
}

// ErrStopped is returned by Apply after Stop.
var ErrStopped = errors.New("agent: stopped")

// Apply makes cfg the agent's configuration: the first call starts it, a
// later one reloads it. cfg's secrets must be resolved (Config.Resolve).
//
// Before anything changes, every new sink is checked: its file must be
// writable, and its credential must exist at the broker and be readable
// with the agent's key (a broker that cannot be reached is only logged:
// the sink starts and retries). If a check fails, Apply returns a
// *ConfigError naming the sink's line and the reason, and the previous
// configuration stays in force. Otherwise sinks that are in both
// configurations keep running untouched, removed ones are stopped (their
// files removed or emptied as configured) and new ones start.
func (a *Agent) Apply(ctx context.Context, cfg *Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return ErrStopped
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Server == "" || (cfg.APIKey == "" && (cfg.ClientID == "" || cfg.ClientSecret == "")) {
		return &ConfigError{File: cfg.File, Msg: "the broker's URL and an API key or service client are required"}
	}
	srcID := cfg.sourceID()
	keep := map[string]*runner{}
	var fresh []*runner
	abort := func(err error) error {
		for _, r := range fresh {
			_ = r.src.Close()
		}
		return err
	}
	for _, s := range cfg.Sinks {
		key := sinkKey(srcID, s)
		if r, ok := a.runners[key]; ok {
			keep[key] = r
			continue
		}
		if err := checkWritable(s.Path); err != nil {
			return abort(&ConfigError{File: cfg.File, Line: s.Line, Msg: fmt.Sprintf("sink %q: %v", s.Credential, err)})
		}
		r := a.newRunner(cfg, s, key)
		src, err := r.newSource()
		if err != nil {
			return abort(&ConfigError{File: cfg.File, Line: s.Line, Msg: fmt.Sprintf("sink %q: %v", s.Credential, err)})
		}
		r.src = src
		fresh = append(fresh, r)
		cctx, cancel := context.WithTimeout(ctx, a.opts.CheckTimeout)
		_, err = src.TokenContext(cctx)
		cancel()
		switch {
		case err == nil:
		case refusedCredential(err):
			return abort(&ConfigError{File: cfg.File, Line: s.Line, Msg: fmt.Sprintf("sink %q: credential %q: %v", s.Credential, s.Credential, err)})
		default:
			r.log.Warn("cannot get the credential's token yet; the sink starts and retries", "error", err)
		}
	}
	// The new configuration is accepted: stop what it drops (before new
	// sinks may write the same paths), then start what it adds.
	for key, r := range a.runners {
		if _, ok := keep[key]; !ok {
			r.stop()
			r.log.Info("sink removed from the configuration")
		}
	}
	for _, r := range fresh {
		keep[r.key] = r
		r.start()
	}
	// A sink that had a token at start has written it before Apply returns,
	// so that "running" means the files are there.
	for _, r := range fresh {
		select {
		case <-r.ready:
		case <-time.After(5 * time.Second):
		}
	}
	a.runners = keep
	a.log.Info("configuration applied", "sinks", len(keep), "new", len(fresh))
	return nil
}

// Stop stops every sink, removing or emptying its file as configured, and
// waits for them. It is idempotent.
func (a *Agent) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	var wg sync.WaitGroup
	for _, r := range a.runners {
		wg.Go(r.stop)
	}
	wg.Wait()
	a.runners = map[string]*runner{}
}

// refusedCredential reports whether err says the credential does not exist
// or may not be read, rather than that the broker is unavailable.
func refusedCredential(err error) bool {
	var be *client.BrokerError
	if errors.As(err, &be) {
		return be.Permanent()
	}
	return client.IsPermanent(err) || errors.Is(err, client.ErrInvalidScope)
}

// sourceID identifies a token source, secrets hashed, to tell whether a
// reload changed it.
func (c *Config) sourceID() string {
	h := sha256.Sum256([]byte(strings.Join([]string{c.Server, c.APIKey, c.ClientID, c.ClientSecret}, "\x00")))
	return hex.EncodeToString(h[:])
}

// sinkKey identifies a sink with its source: a reload keeps a running sink
// only if nothing about it changed.
func sinkKey(srcID string, s Sink) string {
	s.Line = 0
	b, _ := json.Marshal(s)
	return srcID + "\x00" + string(b)
}

// runner keeps one sink's file fresh.
type runner struct {
	a         *Agent
	sink      Sink
	key       string
	mode      os.FileMode
	log       *slog.Logger
	newSource func() (*client.TokenSource, error)

	src    *client.TokenSource // replaced only by the run goroutine once started
	tokens chan *oauth2.Token  // the newest token from the source, capacity 1

	cmdMu      sync.Mutex // guards cmdPending
	cmdPending string     // the event of the command run to come
	cmdWake    chan struct{}
	cmdDone    chan struct{} // closed when the command goroutine ends

	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{} // closed once the token offered before start is written (or none was)
}

func (a *Agent) newRunner(cfg *Config, s Sink, key string) *runner {
	mode, _ := parseMode(s.Mode) // validated
	r := &runner{a: a, sink: s, key: key, mode: mode, tokens: make(chan *oauth2.Token, 1),
		cmdWake: make(chan struct{}, 1), cmdDone: make(chan struct{}), done: make(chan struct{}), ready: make(chan struct{}),
		log: a.log.With("credential", s.Credential, "path", s.Path)}
	server := strings.TrimRight(cfg.Server, "/")
	apiKey, clientID, clientSecret := cfg.APIKey, cfg.ClientID, cfg.ClientSecret
	r.newSource = func() (*client.TokenSource, error) {
		opts := []client.Option{
			client.WithOnToken(r.offer),
			client.WithBackoff(a.opts.BackoffMin, a.opts.BackoffMax),
			client.WithLogger(a.log.With("path", s.Path)), // the source adds the credential
		}
		if a.opts.HTTPClient != nil {
			opts = append(opts, client.WithHTTPClient(a.opts.HTTPClient))
		}
		if clientID != "" {
			return client.ClientCredentials(client.Config{
				TokenURL: server + "/oauth2/token", ClientID: clientID, ClientSecret: clientSecret,
				AuthStyle: client.AuthStyleHeader, Scopes: []string{"credential:" + s.Credential},
			}, opts...)
		}
		return client.NewBroker(client.BrokerConfig{URL: server, APIKey: apiKey, Credential: s.Credential}, opts...)
	}
	return r
}

// offer hands the newest token to the run goroutine, replacing one it has
// not taken yet. It is the source's OnToken hook: calls never overlap.
func (r *runner) offer(t *oauth2.Token) {
	for {
		select {
		case r.tokens <- t:
			return
		default:
		}
		select {
		case <-r.tokens:
		default:
		}
	}
}

func (r *runner) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.commands()
	go r.run(ctx)
}

// stop ends the runner and waits for it, leaving its file removed or
// emptied.
func (r *runner) stop() {
	r.cancel()
	<-r.done
}

// pollInterval is how often the runner checks that its source has not
// stopped for good. After Options.PermanentRetry it replaces a source that
// did: the key may be granted again, the credential re-added.
const pollInterval = time.Second

func (r *runner) run(ctx context.Context) {
	defer func() {
		close(r.cmdWake)
		<-r.cmdDone
		close(r.done)
	}()
	var (
		expiry   *time.Timer
		expired  <-chan time.Time
		last     []byte // the file's contents, nil if it holds no token
		lastTok  string // the access token in the file, "" if none
		wait     time.Duration
		checking chan error // non-nil while a replacement is awaited
		deadAt   time.Time
	)
	stopTimer := func() {
		if expiry != nil {
			expiry.Stop()
			expiry, expired = nil, nil
		}
	}
	clearState := func(reason string) {
		stopTimer()
		if err := r.clearFile(); err != nil {
			r.log.Error("cannot clear the file", "error", err)
			return
		}
		if last != nil {
			r.log.Warn(reason, "on_expiry", r.sink.OnExpiry)
			last, lastTok = nil, ""
			r.command("expired")
		}
	}
	// A file left by an earlier run may hold an expired token: unless a
	// token is already here, put the file in its no-token state.
	if len(r.tokens) == 0 {
		if err := r.clearFile(); err != nil {
			r.log.Error("cannot clear the file", "error", err)
		}
	}
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	ready := r.ready
	if len(r.tokens) == 0 {
		close(ready)
		ready = nil
	}
	defer func() {
		if ready != nil {
			close(ready)
		}
	}()
	for {
		if ready != nil && len(r.tokens) == 0 && last != nil {
			close(ready)
			ready = nil
		}
		select {
		case <-ctx.Done():
			_ = r.src.Close()
			clearState("the agent stopped: the file no longer holds a token")
			return
		case t := <-r.tokens:
			now := time.Now()
			if !t.Expiry.IsZero() && !t.Expiry.After(now) {
				continue // superseded or expired: never written
			}
			data, err := render(r.sink.Template, t.AccessToken, t.Expiry)
			if err != nil { // validated at start
				r.log.Error("cannot render the template", "error", err)
				continue
			}
			if !bytes.Equal(data, last) {
				if err := writeFileAtomic(r.sink.Path, data, r.mode); err != nil {
					r.log.Error("cannot write the file; keeping the previous one", "error", err)
					continue
				}
				last = data
				r.log.Info("wrote a new token", "expires_at", t.Expiry.UTC().Format(time.RFC3339))
				r.command("updated")
			}
			if t.AccessToken != lastTok {
				lastTok = t.AccessToken
				wait = replacementWait(t.Expiry.Sub(now))
			}
			stopTimer()
			if !t.Expiry.IsZero() {
				expiry = time.NewTimer(t.Expiry.Sub(now))
				expired = expiry.C
			}
		case <-expired:
			expiry, expired = nil, nil
			if checking != nil {
				continue
			}
			// The advertised expiry has come: the broker replaces the token
			// a margin later and answers a read made now with the new one.
			// Wait for it briefly; a failed or late answer clears the file.
			ch := make(chan error, 1)
			checking = ch
			src, cur, d := r.src, lastTok, wait
			go func() {
				cctx, cancel := context.WithTimeout(ctx, d)
				defer cancel()
				for {
					t, err := src.TokenContext(cctx)
					if err != nil { // the broker is down or refuses: clear now
						ch <- err
						return
					}
					if t.AccessToken != cur && (t.Expiry.IsZero() || t.Expiry.After(time.Now())) {
						r.offer(t)
						ch <- nil
						return
					}
					// The same token: its replacement is not committed yet.
					select {
					case <-cctx.Done():
						ch <- cctx.Err()
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			}()
		case err := <-checking:
			checking = nil
			if err != nil && expiry == nil {
				r.log.Debug("no replacement for the token at its advertised expiry", "error", err)
				clearState("the token reached its advertised expiry and no new one could be obtained")
			}
		case <-poll.C:
			if !deadAt.IsZero() {
				if time.Since(deadAt) < r.a.opts.PermanentRetry {
					continue
				}
				src, err := r.newSource()
				if err != nil {
					r.log.Error("cannot create the token source", "error", err)
					continue
				}
				r.src, deadAt = src, time.Time{}
				r.log.Info("trying the credential again after a permanent failure")
				continue
			}
			// Only a look: a request in flight is not waited for.
			cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
			_, err := r.src.TokenContext(cctx)
			cancel()
			if err != nil && (client.IsPermanent(err) || errors.Is(err, client.ErrClosed)) {
				r.log.Error("the broker refuses this credential; trying again later", "error", err, "retry_in", r.a.opts.PermanentRetry)
				_ = r.src.Close()
				deadAt = time.Now()
			}
		}
	}
}

// replacementWait is how long past its advertised expiry a token stays in
// the file while the agent waits for its replacement: half the advertised
// life it had when written, at least one second and at most five. The broker advertises an
// expiry a margin before it replaces a token (and the provider's expiry is
// later still), so the token still works meanwhile; the broker answers the
// read made at the advertised expiry as soon as the replacement is
// committed. A broker that is down answers at once with an error, and the
// file is cleared at the advertised expiry.
func replacementWait(left time.Duration) time.Duration {
	if left <= 0 {
		return 0
	}
	return min(5*time.Second, max(left/2, time.Second))
}

// clearFile puts the file in the state on_expiry promises.
func (r *runner) clearFile() error {
	if r.sink.OnExpiry == OnExpiryEmpty {
		return writeFileAtomic(r.sink.Path, nil, r.mode)
	}
	return removeFile(r.sink.Path)
}

// command asks for the sink's command to run after a change (event
// "updated" or "expired"). Runs never overlap; requests made while one runs
// collapse into one run with the newest event.
func (r *runner) command(event string) {
	if len(r.sink.Command) == 0 {
		return
	}
	r.cmdMu.Lock()
	r.cmdPending = event
	r.cmdMu.Unlock()
	select {
	case r.cmdWake <- struct{}{}:
	default:
	}
}

// commands runs the sink's command on request until cmdWake is closed.
func (r *runner) commands() {
	defer close(r.cmdDone)
	for range r.cmdWake {
		r.cmdMu.Lock()
		event := r.cmdPending
		r.cmdMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), r.a.opts.CommandTimeout)
		cmd := exec.CommandContext(ctx, r.sink.Command[0], r.sink.Command[1:]...)
		cmd.Env = append(childEnv(os.Environ()),
			"TOKENKEEPER_SINK_PATH="+r.sink.Path,
			"TOKENKEEPER_SINK_CREDENTIAL="+r.sink.Credential,
			"TOKENKEEPER_SINK_EVENT="+event)
		cmd.Stdout, cmd.Stderr = r.a.opts.CommandOutput, r.a.opts.CommandOutput
		cmd.WaitDelay = time.Second
		err := cmd.Run()
		cancel()
		if err != nil {
			r.log.Error("the sink's command failed", "command", r.sink.Command[0], "event", event, "error", err)
		} else {
			r.log.Debug("ran the sink's command", "command", r.sink.Command[0], "event", event)
		}
	}
}

// childEnv returns env without the variables that hold the agent's own
// secrets: a sink's command gets the token file, not the key to the broker.
func childEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if strings.HasPrefix(kv, "TOKENKEEPER_API_KEY=") || strings.HasPrefix(kv, "TOKENKEEPER_CLIENT_SECRET=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
