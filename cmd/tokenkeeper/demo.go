package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/client"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// demoStats counts what the demo shows; safe for concurrent use.
type demoStats struct {
	mu        sync.Mutex
	refreshes map[string]int    // guarded by mu: successful refreshes per credential
	failures  map[string]int    // guarded by mu: failed attempts per credential
	last      map[string]string // guarded by mu: last event per credential

	consumerOK, consumerFailed atomic.Int64
}

func (d *demoStats) onAttempt(c *tokenkeeper.Credential, ev *tokenkeeper.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ev.Outcome == tokenkeeper.OutcomeOK {
		d.refreshes[c.Name]++
	} else {
		d.failures[c.Name]++
	}
	msg := ev.Outcome
	if ev.ErrorCode != "" {
		msg += " (" + ev.ErrorCode + ")"
	}
	d.last[c.Name] = fmt.Sprintf("%s refresh %s, %dms", ev.Time.Local().Format("15:04:05"), msg, ev.Latency.Milliseconds())
}

func (e *env) cmdDemo(c *command) runFunc {
	c.commandEnv() // a tool: its variables must not be the broker's
	c.describe("tokenkeeper demo [--duration 60s] [--addr 127.0.0.1:0] [--keep]",
		`Runs tokenkeeper's main job on this machine alone, with no network: a
built-in OAuth2 test provider with short token lifetimes, refresh-token
rotation and reuse detection; the broker on a SQLite database in a temporary
directory; three credentials (client credentials, a rotating refresh token,
and one whose grant the provider revokes midway, repaired through a
reconnect link the demo prints: open it and click Approve, or pass
--auto-approve); and a consumer that calls the provider's protected API
every second through the Go library, fed by the broker. The broker's web
console is at /ui/: the demo prints a user and password to sign in with.
Stops on Ctrl-C or after --duration, with a summary. The temporary directory
(database, master key, broker log) is removed at the end unless --keep is
given.`)
	duration := c.fs.Duration("duration", 60*time.Second, "how long to run (0: until Ctrl-C)")
	addr := c.fs.String("addr", "127.0.0.1:0", "broker address (port 0: any free port)")
	lifetime := c.fs.Duration("lifetime", 6*time.Second, "access token lifetime at the test provider")
	revokeAfter := c.fs.Duration("revoke-after", 0, "when the provider revokes the third credential's grant (default: a third of --duration, or 20s)")
	autoApprove := c.fs.Bool("auto-approve", false, "follow the reconnect link itself (the test provider then approves at once) instead of waiting for you to open it")
	keep := c.fs.Bool("keep", false, "keep the temporary directory (database, master key, broker log) and print where it is")
	return func(args []string) error {
		if _, err := c.args(0, "no arguments"); err != nil {
			return err
		}
		if *duration < 0 || *lifetime < time.Second || *revokeAfter < 0 {
			return usagef("--duration must not be negative and --lifetime must be at least 1s")
		}
		if *revokeAfter == 0 {
			*revokeAfter = 20 * time.Second
			if *duration > 0 {
				*revokeAfter = *duration / 3
			}
		}
		// Setting up (broker, provider, credentials, keys) is not part of
		// --duration: on a busy machine it can take seconds.
		ctx := e.ctx

		dir, err := os.MkdirTemp("", "tokenkeeper-demo-")
		if err != nil {
			return fmt.Errorf("create temp dir: %w", err)
		}
		defer func() {
			if *keep {
				fmt.Fprintf(e.stdout, "\nKept the database, its master key and the broker log in %s (remove it when done).\n", dir)
				return
			}
			os.RemoveAll(dir)
		}()

		// The provider.
		secrets := map[string]string{"payments-service": randomString(), "calendar-app": randomString(), "crm-app": randomString()}
		// Without --auto-approve a person approves the reconnect on the
		// provider's consent page.
		opts := []oauthtest.Option{oauthtest.WithLifetime(*lifetime), oauthtest.WithRotation(true), oauthtest.WithReuseDetection(0),
			oauthtest.WithConsent(!*autoApprove)}
		for id, s := range secrets {
			opts = append(opts, oauthtest.WithClient(id, s))
		}
		idp := oauthtest.NewServer(opts...)
		defer idp.Close()

		// The broker, on an embedded SQLite database in the temp dir. Its logs
		// go to a file so that the table stays readable.
		logPath := filepath.Join(dir, "broker.log")
		logFile, err := os.Create(logPath)
		if err != nil {
			return err
		}
		defer logFile.Close()
		lo := logOptions{level: "info", format: "text"}
		logger, _ := lo.logger(logFile)
		so := storeOptions{database: filepath.Join(dir, "tokenkeeper.db")}
		quiet := *e
		quiet.stderr = io.Discard
		quiet.getenv = func(string) string { return "" } // the broker's variables ($TOKENKEEPER_MASTER_KEY ...) are not the demo's
		store, err := quiet.openStore(&so, logger, true)
		if err != nil {
			return err
		}
		adminKey, err := ensureAdminKey(ctx, store, "admin")
		if err != nil {
			store.Close()
			return err
		}
		stats := &demoStats{refreshes: map[string]int{}, failures: map[string]int{}, last: map[string]string{}}
		bo := brokerOptions{addr: *addr, concurrency: 8, providerTimeout: 10 * time.Second, defaultLifetime: time.Hour, shutdownTimeout: 10 * time.Second}
		b, err := startBroker(context.WithoutCancel(ctx), store, bo, logger, stats.onAttempt)
		if err != nil {
			store.Close()
			return err
		}
		defer func() { b.Stop(); _ = b.Wait() }()

		api := &apiClient{base: b.URL, key: adminKey, client: &http.Client{Timeout: 30 * time.Second}}
		creds := []map[string]any{
			{"name": "payments-api", "token_url": idp.TokenURL(), "grant_type": "client_credentials",
				"client_id": "payments-service", "client_secret": secrets["payments-service"], "scopes": []string{"payments.read"}},
			{"name": "calendar", "token_url": idp.TokenURL(), "grant_type": "refresh_token", "client_id": "calendar-app",
				"client_secret": secrets["calendar-app"], "refresh_token": idp.IssueRefreshToken("calendar-app", "calendar.read")},
			{"name": "crm", "provider": "crm-idp", "grant_type": "refresh_token",
				"refresh_token": idp.IssueRefreshToken("crm-app", "contacts.read")},
		}
		// crm's provider has an authorization endpoint, so that a connect link
		// can repair its grant.
		if err := api.do(ctx, "POST", "/v1/providers", map[string]any{"name": "crm-idp", "authorization_url": idp.AuthorizeURL(),
			"token_url": idp.TokenURL(), "client_id": "crm-app", "client_secret": secrets["crm-app"], "auth_style": "body",
			"scopes": []string{"contacts.read"}}, nil); err != nil {
			return fmt.Errorf("create demo provider: %w", err)
		}
		for _, cr := range creds {
			if err := api.do(ctx, "POST", "/v1/credentials", cr, nil); err != nil {
				return fmt.Errorf("create demo credential %s: %w", cr["name"], err)
			}
		}
		var consumer struct {
			Key string `json:"key"`
		}
		if err := api.do(ctx, "POST", "/v1/apikeys", map[string]any{"name": "demo-consumer", "role": "consumer", "credentials": []string{"payments-api", "calendar"}}, &consumer); err != nil {
			return fmt.Errorf("create consumer key: %w", err)
		}

		// A user for the web console, with a per-run password.
		consolePassword := randomString()
		if err := api.do(ctx, "POST", "/v1/users", map[string]any{"username": "demo", "password": consolePassword, "role": "admin"}, nil); err != nil {
			return fmt.Errorf("create console user: %w", err)
		}

		if *duration > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, *duration)
			defer cancel()
		}
		w := e.stdout
		fmt.Fprintf(w, "tokenkeeper demo: everything runs on this machine, nothing leaves it.\n\n")
		fmt.Fprintf(w, "  test provider  %s (tokens live %s, refresh tokens rotate, reuse revokes the family)\n", idp.URL(), *lifetime)
		if *keep {
			fmt.Fprintf(w, "  broker         %s (SQLite in %s, logs in %s; kept at the end)\n", b.URL, dir, logPath)
		} else {
			fmt.Fprintf(w, "  broker         %s (SQLite and its logs in a temporary directory, removed at the end; --keep keeps them)\n", b.URL)
		}
		fmt.Fprintf(w, "  admin API key  %s\n", adminKey)
		fmt.Fprintf(w, "  web console    %s/ui/ (sign in as demo, password %s)\n\n", b.URL, consolePassword)
		fmt.Fprintf(w, "Try, in another terminal while it runs:\n")
		fmt.Fprintf(w, "  curl -s -H 'Authorization: Bearer %s' %s/v1/credentials\n", adminKey, b.URL)
		fmt.Fprintf(w, "  curl -s -H 'Authorization: Bearer %s' %s/v1/credentials/calendar/token\n\n", adminKey, b.URL)
		fmt.Fprintf(w, "A consumer calls the provider's protected API every second for payments-api and calendar,\n")
		fmt.Fprintf(w, "through client.Transport fed by the broker. At %s the provider revokes crm's grant.\n\n", revokeAfter.Round(time.Second))

		// The consumers: the Go library against the broker.
		var wg sync.WaitGroup
		consumerErrs := make(chan string, 64)
		for _, name := range []string{"payments-api", "calendar"} {
			src, err := client.NewBroker(client.BrokerConfig{URL: b.URL, APIKey: consumer.Key, Credential: name}, client.WithLogger(logger.With("component", "consumer", "credential", name)))
			if err != nil {
				return err
			}
			defer src.Close()
			hc := &http.Client{Transport: &client.Transport{Source: src}, Timeout: 10 * time.Second}
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(time.Second)
				defer tick.Stop()
				for {
					if err := callResource(ctx, hc, idp.ResourceURL()); err != nil {
						if ctx.Err() != nil {
							return
						}
						stats.consumerFailed.Add(1)
						select {
						case consumerErrs <- fmt.Sprintf("%s: %v", name, err):
						default:
						}
					} else {
						stats.consumerOK.Add(1)
					}
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
				}
			}()
		}

		start := time.Now()
		revoked := false
		reconnectLink, reconnectID, reconnected := "", "", false
		tty := isTerminal(w)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		lines := 0
		for loop := 0; ; loop++ {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
			if ctx.Err() != nil {
				break
			}
			if !revoked && time.Since(start) >= *revokeAfter {
				idp.RevokeClientTokens("crm-app")
				revoked = true
			}
			// Once crm needs re-authorization, a reconnect link repairs it.
			if revoked && reconnectID == "" {
				var cur struct {
					Status string `json:"status"`
				}
				if api.do(ctx, "GET", "/v1/credentials/crm", nil, &cur) == nil && cur.Status == "needs_reauth" {
					var sess struct {
						ID  string `json:"id"`
						URL string `json:"url"`
					}
					if err := api.do(ctx, "POST", "/v1/connect/sessions", map[string]any{"provider": "crm-idp", "name": "crm"}, &sess); err != nil {
						fmt.Fprintf(w, "  cannot create a reconnect session for crm: %v\n", err)
					} else {
						reconnectID, reconnectLink = sess.ID, sess.URL
						fmt.Fprintf(w, "\ncrm needs re-authorization. Open this reconnect link in a browser and click Approve:\n  %s\n\n", reconnectLink)
						lines = 0
						if *autoApprove {
							go followLink(ctx, reconnectLink)
						}
					}
				}
			}
			if reconnectID != "" && !reconnected {
				var sess struct {
					Status string `json:"status"`
					Reason string `json:"reason"`
				}
				if api.do(ctx, "GET", "/v1/connect/sessions/"+reconnectID, nil, &sess) == nil && sess.Status != "pending" {
					reconnected = sess.Status == "connected"
					fmt.Fprintf(w, "\ncrm reconnect session ended: %s %s\n\n", sess.Status, sess.Reason)
					lines = 0
				}
			}
			if !tty && loop%5 != 4 {
				continue
			}
			table := e.demoTable(ctx, api, stats, time.Since(start))
			if tty && lines > 0 {
				fmt.Fprintf(w, "\033[%dA\033[J", lines)
			}
			fmt.Fprint(w, table)
			lines = strings.Count(table, "\n")
		drain:
			for {
				select {
				case m := <-consumerErrs:
					fmt.Fprintf(w, "  consumer error: %s\n", m)
					lines++
				default:
					break drain
				}
			}
		}
		wg.Wait()

		// Summary.
		final := e.demoTable(context.Background(), api, stats, time.Since(start))
		fmt.Fprintf(w, "\nFinal state:\n%s\n", final)
		st := idp.Stats()
		stats.mu.Lock()
		total, failed := 0, 0
		for _, n := range stats.refreshes {
			total += n
		}
		for _, n := range stats.failures {
			failed += n
		}
		stats.mu.Unlock()
		fmt.Fprintf(w, "Summary after %s:\n", time.Since(start).Round(time.Second))
		fmt.Fprintf(w, "  refreshes            %d succeeded, %d failed attempts\n", total, failed)
		fmt.Fprintf(w, "  consumer requests    %d succeeded, %d failed\n", stats.consumerOK.Load(), stats.consumerFailed.Load())
		fmt.Fprintf(w, "  provider             %d token requests, %d refresh-token reuse detections, max presentations of one refresh token: %d\n",
			sumMap(st.TokenRequests), st.ReuseDetections, idp.MaxPresentations())
		switch {
		case reconnected:
			fmt.Fprintf(w, "  crm                  the provider revoked its grant; after one invalid_grant the broker marked it\n")
			fmt.Fprintf(w, "                       needs_reauth, stopped calling the provider, and was reconnected in place\n")
			fmt.Fprintf(w, "                       through a connect link (same credential, events kept): crm reconnected\n")
		case revoked:
			fmt.Fprintf(w, "  crm                  the provider revoked its grant; after one invalid_grant the broker marked it\n")
			fmt.Fprintf(w, "                       needs_reauth and stopped calling the provider until it is reconnected:\n")
			fmt.Fprintf(w, "                       tokenkeeper connect crm-idp --name crm\n")
		}
		if stats.consumerFailed.Load() > 0 || st.ReuseDetections > 0 {
			return fmt.Errorf("demo saw %d consumer failures and %d reuse detections", stats.consumerFailed.Load(), st.ReuseDetections)
		}
		return nil
	}
}

// followLink opens a connect link as a browser would, following the
// provider's redirects to the broker's callback (the test provider
// approves at once without --consent).
func followLink(ctx context.Context, link string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func sumMap(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// callResource calls the provider's protected endpoint once.
func callResource(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("protected API answered %s", resp.Status)
	}
	return nil
}

// demoTable renders the live status table.
func (e *env) demoTable(ctx context.Context, api *apiClient, stats *demoStats, elapsed time.Duration) string {
	var list struct {
		Credentials []credentialView `json:"credentials"`
	}
	var sb strings.Builder
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := api.do(qctx, "GET", "/v1/credentials", nil, &list); err != nil {
		fmt.Fprintf(&sb, "  (cannot list credentials: %v)\n", err)
		return sb.String()
	}
	sort.Slice(list.Credentials, func(i, j int) bool { return list.Credentials[i].Name < list.Credentials[j].Name })
	fmt.Fprintf(&sb, "[%s]  consumer requests: %d ok, %d failed\n", elapsed.Round(time.Second), stats.consumerOK.Load(), stats.consumerFailed.Load())
	tw := tabwriter.NewWriter(&sb, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  CREDENTIAL\tGRANT\tSTATUS\tEXPIRES IN\tREFRESHES\tLAST EVENT")
	now := time.Now()
	stats.mu.Lock()
	for _, c := range list.Credentials {
		last := stats.last[c.Name]
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\n", c.Name, c.GrantType, c.Status, untilString(c.ExpiresAt, now), stats.refreshes[c.Name], last)
	}
	stats.mu.Unlock()
	tw.Flush()
	return sb.String()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

// randomString returns 24 random bytes as URL-safe base64: a per-run secret.
func randomString() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
