package bench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// ReadConfig configures a Read run.
type ReadConfig struct {
	Connections int           // concurrent keep-alive connections, 1 to 4096
	Duration    time.Duration // of each run, positive
	Database    string        // postgres:// URL; "": a temporary SQLite file
	Rounds      int           // alternating rounds of every run, 1 to 100; 0: 1
	Wrk         string        // drive the load with this wrk binary (a path or a name on PATH); "": the built-in driver
	WrkThreads  int           // wrk -t; 0: 2
	// CPUProfile, if not nil, receives a CPU profile of the first
	// round's runs of the broker (the bare handler's is left out).
	CPUProfile io.Writer
}

func (c *ReadConfig) validate() error {
	if c.Connections < 1 || c.Connections > 4096 || c.Duration <= 0 {
		return configErrorf("--connections must be from 1 to 4096 and --duration positive")
	}
	if c.Rounds == 0 {
		c.Rounds = 1
	}
	if c.Rounds < 1 || c.Rounds > 100 {
		return configErrorf("--rounds must be from 1 to 100")
	}
	if c.WrkThreads == 0 {
		c.WrkThreads = 2
	}
	if c.WrkThreads < 1 || c.WrkThreads > 256 {
		return configErrorf("--wrk-threads must be from 1 to 256")
	}
	if c.Wrk != "" && (c.Duration < time.Second || c.Duration%time.Second != 0) {
		return configErrorf("--duration must be whole seconds with --wrk (wrk counts in seconds), not %s", c.Duration)
	}
	return nil
}

// ReadRun is what one caller's run measured.
type ReadRun struct {
	Key               string // "bare", "apikey", "jwt" or "client": the prefix of its JSON keys
	Name              string // as the text report names it
	Requests, Errors  int64
	RequestsPerSecond float64
	P50, P99          time.Duration
}

// ReadReport is what a Read run measured: the bare handler's run first,
// then the broker's, one per kind of caller. With several rounds, Runs
// holds each kind's medians (errors and requests summed) and Rounds each
// round's runs, in the same order.
type ReadReport struct {
	Connections int
	Duration    time.Duration
	BodyBytes   int    // of the token answer, which the bare handler also sends
	Driver      string // "" for the built-in driver, "wrk -t2" for wrk
	BareIn      string // where the bare handler ran: "this process" or "a separate process"
	Runs        []ReadRun
	Rounds      [][]ReadRun
}

// MarshalJSON writes the report as one flat object, as the command has
// always printed it: connections, duration, body_bytes and, per run,
// KEY_rps, KEY_p99_ms, KEY_errors and (but for the bare handler) KEY_ratio,
// the run's request rate over the bare handler's, and KEY_p99_ratio, its
// p99 over the bare handler's; since --wrk and --rounds, also driver,
// rounds and bare_in (where the bare handler ran).
func (r *ReadReport) MarshalJSON() ([]byte, error) {
	driver := r.Driver
	if driver == "" {
		driver = "built-in"
	}
	out := map[string]any{"connections": r.Connections, "duration": r.Duration.String(), "body_bytes": r.BodyBytes,
		"driver": driver, "rounds": max(1, len(r.Rounds))}
	if r.BareIn != "" {
		out["bare_in"] = r.BareIn
	}
	for i, run := range r.Runs {
		k := run.Key
		out[k+"_rps"], out[k+"_p99_ms"], out[k+"_errors"] = run.RequestsPerSecond, millis(run.P99), run.Errors
		if i > 0 {
			out[k+"_ratio"], out[k+"_p99_ratio"] = r.ratio(i), r.p99Ratio(i)
		}
	}
	return json.Marshal(out)
}

// ratio is run i's request rate over the bare handler's: with several
// rounds, the median of each round's ratio.
func (r *ReadReport) ratio(i int) float64 {
	return r.overRounds(i, func(run, bare ReadRun) float64 { return run.RequestsPerSecond / bare.RequestsPerSecond })
}

// p99Ratio is run i's p99 latency over the bare handler's, the median
// over the rounds as ratio's.
func (r *ReadReport) p99Ratio(i int) float64 {
	return r.overRounds(i, func(run, bare ReadRun) float64 { return float64(run.P99) / float64(bare.P99) })
}

func (r *ReadReport) overRounds(i int, f func(run, bare ReadRun) float64) float64 {
	if len(r.Rounds) == 0 {
		return f(r.Runs[i], r.Runs[0])
	}
	vs := make([]float64, len(r.Rounds))
	for j, round := range r.Rounds {
		vs[j] = f(round[i], round[0])
	}
	return median(vs)
}

// WriteText prints the report as the command does without --json.
func (r *ReadReport) WriteText(w io.Writer) error {
	var tw textWriter
	how := ""
	if r.Driver != "" {
		how = "; load from " + r.Driver
	}
	if len(r.Rounds) > 1 {
		how += fmt.Sprintf("; %d alternating rounds, medians", len(r.Rounds))
	}
	if r.BareIn == "a separate process" {
		how += "; bare handler in a separate process"
	}
	tw.printf("bench read: %d connections, %s each, body %d bytes%s\n", r.Connections, r.Duration, r.BodyBytes, how)
	for i, run := range r.Runs {
		ratio := ""
		if i > 0 {
			ratio = fmt.Sprintf("  ratio %.2f, p99 %.2f×", r.ratio(i), r.p99Ratio(i))
		}
		tw.printf("  %-28s %9.0f req/s  p50 %s  p99 %s  errors %d%s\n", run.Name, run.RequestsPerSecond, ms(run.P50), ms(run.P99), run.Errors, ratio)
	}
	if len(r.Rounds) > 1 {
		for j, round := range r.Rounds {
			parts := make([]string, len(round))
			for i, run := range round {
				if i == 0 {
					parts[i] = fmt.Sprintf("%s %.0f req/s p99 %s", run.Key, run.RequestsPerSecond, ms(run.P99))
				} else {
					parts[i] = fmt.Sprintf("%s %.2f (p99 %.2f×)", run.Key, run.RequestsPerSecond/round[0].RequestsPerSecond, float64(run.P99)/float64(round[0].P99))
				}
			}
			tw.printf("  round %-22d %s\n", j+1, strings.Join(parts, ", "))
		}
	}
	return tw.flush(w)
}

// Read measures the token read path: it drives GET
// /v1/credentials/NAME/token over loopback keep-alive connections against a
// broker in this process, as an API key, as a user's access token (JWT),
// and as a service client at /oauth2/token; and in the same run a bare
// net/http handler answering a body of the same size. The database it
// creates is removed before it returns.
func Read(ctx context.Context, cfg ReadConfig, w Wiring, logf Logf) (*ReadReport, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var wrk *wrkDriver
	if cfg.Wrk != "" {
		var err error
		// wrk refuses more threads than connections.
		if wrk, err = newWrkDriver(ctx, cfg.Wrk, min(cfg.WrkThreads, cfg.Connections)); err != nil {
			return nil, err
		}
		defer wrk.close()
	}
	if err := w.need("OpenStore", "StartBroker", "CreateAdminKey"); err != nil {
		return nil, err
	}
	db, err := openBenchStore(ctx, w, cfg.Database)
	if err != nil {
		return nil, err
	}
	secret := randomSecret()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("bench", secret))
	defer idp.Close()
	key, err := w.CreateAdminKey(ctx, db.store, "bench")
	if err != nil {
		db.cleanup()
		return nil, err
	}
	b, err := w.StartBroker(ctx, db.store, BrokerConfig{Concurrency: 4, ProviderTimeout: 10 * time.Second,
		DefaultLifetime: time.Hour, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		db.cleanup()
		return nil, err
	}
	defer func() { _ = b.Stop(); db.cleanup() }()
	runs, body, err := readRuns(ctx, b.URL, key, idp, secret)
	if err != nil {
		return nil, err
	}
	// The bare handler: same body, no work; in this process, or in
	// another with Go's default settings (this one has the broker's).
	bareURL, bareIn, stopBare, err := startBareHandler(ctx, w, body)
	if err != nil {
		return nil, err
	}
	defer stopBare()
	rep := &ReadReport{Connections: cfg.Connections, Duration: cfg.Duration, BodyBytes: len(body), BareIn: bareIn}
	runs = append([]loadTarget{{key: "bare", name: "bare net/http handler", target: bareURL}}, runs...)

	driveOne := func(ctx context.Context, t loadTarget) (ReadRun, error) {
		return drive(ctx, t, cfg.Connections, cfg.Duration), nil
	}
	if wrk != nil {
		rep.Driver = wrk.describe()
		driveOne = func(ctx context.Context, t loadTarget) (ReadRun, error) {
			return wrk.run(ctx, t, cfg.Connections, cfg.Duration)
		}
	}
	// The CPU profile covers the first round's runs of the broker.
	profiling := false
	stopProfile := func() {
		if profiling {
			pprof.StopCPUProfile()
			profiling = false
		}
	}
	defer stopProfile()
	logf("bench read: %d connections, %s per run, %d round(s), %s", cfg.Connections, cfg.Duration, cfg.Rounds, db.desc)
	for round := range cfg.Rounds {
		var runs1 []ReadRun
		for i, t := range runs {
			if round == 0 && i == 1 && cfg.CPUProfile != nil {
				if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
					return nil, fmt.Errorf("CPU profile: %w", err)
				}
				profiling = true
			}
			res, err := driveOne(ctx, t)
			if i == len(runs)-1 {
				stopProfile()
			}
			if err != nil {
				return nil, err
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			res.Key, res.Name = t.key, t.name
			runs1 = append(runs1, res)
			logf("  round %d: %s %.0f req/s, p99 %s", round+1, t.name, res.RequestsPerSecond, ms(res.P99))
		}
		rep.Rounds = append(rep.Rounds, runs1)
	}
	rep.Runs = medianRuns(rep.Rounds)
	if len(rep.Rounds) == 1 {
		rep.Rounds = nil
	}
	return rep, nil
}

// medianRuns is each kind's median over the rounds: its request rate,
// p50 and p99 (each on its own); requests and errors are summed.
func medianRuns(rounds [][]ReadRun) []ReadRun {
	out := make([]ReadRun, len(rounds[0]))
	for i := range out {
		var rps, p50, p99 []float64
		out[i] = ReadRun{Key: rounds[0][i].Key, Name: rounds[0][i].Name}
		for _, round := range rounds {
			r := round[i]
			rps, p50, p99 = append(rps, r.RequestsPerSecond), append(p50, float64(r.P50)), append(p99, float64(r.P99))
			out[i].Requests += r.Requests
			out[i].Errors += r.Errors
		}
		out[i].RequestsPerSecond, out[i].P50, out[i].P99 = median(rps), time.Duration(median(p50)), time.Duration(median(p99))
	}
	return out
}

// median of vs (not empty), the mean of the middle two for an even count.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// startBareHandler starts the bare handler answering body: in another
// process with w.StartBare, in this one without. It returns its URL, where
// it runs ("a separate process" or "this process") and what stops it.
func startBareHandler(ctx context.Context, w Wiring, body []byte) (url, where string, stop func(), err error) {
	if w.StartBare != nil {
		url, stop, err := w.StartBare(ctx, body)
		if err != nil {
			return "", "", nil, fmt.Errorf("start the bare handler: %w", err)
		}
		return url, "a separate process", stop, nil
	}
	url, stop, err = ServeBare("127.0.0.1:0", body)
	if err != nil {
		return "", "", nil, err
	}
	return url, "this process", stop, nil
}

// ServeBare serves the bare handler of Read on addr: a net/http server
// with Go's defaults answering body, as JSON not to be cached, to every
// request. It returns its URL and a function that stops it.
func ServeBare(addr string, body []byte) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	})}
	go func() { _ = bare.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/", func() { _ = bare.Close() }, nil
}

// loadTarget is one kind of request a Read run sends.
type loadTarget struct {
	key, name    string
	target, auth string
	form         string // POST this form; "": GET
}

// readRuns sets up the broker's callers: a credential, a user and a
// service client. It returns their targets and the token answer's body.
func readRuns(ctx context.Context, base, key string, idp *oauthtest.Server, secret string) ([]loadTarget, []byte, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	if err := postJSON(ctx, hc, base, key, "/v1/credentials", map[string]any{"name": "bench", "token_url": idp.TokenURL(),
		"grant_type": "client_credentials", "client_id": "bench", "client_secret": secret}, nil); err != nil {
		return nil, nil, err
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/credentials/bench/token", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, nil, fmt.Errorf("token read failed: %s %s", resp.Status, body)
	}
	// The other callers: a user's access token (JWT) and a service client
	// at the OAuth2 token endpoint.
	password := randomSecret()
	if err := postJSON(ctx, hc, base, key, "/v1/users", map[string]string{"username": "bench", "password": password, "role": "admin"}, nil); err != nil {
		return nil, nil, err
	}
	var login struct {
		AccessToken string `json:"access_token"`
	}
	if err := postJSON(ctx, hc, base, key, "/v1/auth/login", map[string]string{"username": "bench", "password": password}, &login); err != nil {
		return nil, nil, err
	}
	var cl struct {
		ClientSecret string `json:"client_secret"`
	}
	if err := postJSON(ctx, hc, base, key, "/v1/clients", map[string]any{"client_id": "bench", "credentials": []string{"bench"}}, &cl); err != nil {
		return nil, nil, err
	}
	tokenURL := base + "/v1/credentials/bench/token"
	return []loadTarget{
		{key: "apikey", name: "GET .../token, API key", target: tokenURL, auth: "Bearer " + key},
		{key: "jwt", name: "GET .../token, user JWT", target: tokenURL, auth: "Bearer " + login.AccessToken},
		{key: "client", name: "POST /oauth2/token, client", target: base + "/oauth2/token",
			auth: "Basic " + base64.StdEncoding.EncodeToString([]byte("bench:"+cl.ClientSecret)),
			form: "grant_type=client_credentials&scope=credential%3Abench"},
	}, body, nil
}

// drive sends t's request from conns keep-alive connections for d and
// measures the rate and latencies of the answers.
func drive(ctx context.Context, t loadTarget, conns int, d time.Duration) ReadRun {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var total, errs atomic.Int64
	lats := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conns {
		wg.Go(func() {
			tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			req, _ := http.NewRequest("GET", t.target, nil)
			if t.form != "" {
				req.Method = "POST"
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if t.auth != "" {
				req.Header.Set("Authorization", t.auth)
			}
			local := make([]time.Duration, 0, 1<<16)
			for ctx.Err() == nil {
				t0 := time.Now()
				if t.form != "" {
					req.Body = io.NopCloser(strings.NewReader(t.form))
					req.ContentLength = int64(len(t.form))
				}
				resp, err := hc.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs.Add(1)
				}
				total.Add(1)
				local = append(local, time.Since(t0))
			}
			lats[i] = local
		})
	}
	wg.Wait()
	el := time.Since(start)
	all := slices.Concat(lats...)
	slices.Sort(all)
	return ReadRun{Requests: total.Load(), Errors: errs.Load(), RequestsPerSecond: float64(total.Load()) / el.Seconds(),
		P50: percentile(all, 0.5), P99: percentile(all, 0.99)}
}
