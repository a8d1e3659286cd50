package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/agent"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// consumerBroker is a broker started through run with one client_credentials
// credential "cred" at an oauthtest provider issuing tokens of lifetime.
type consumerBroker struct {
	*servedBroker
	idp    *oauthtest.Server
	secret string // the provider's client secret
}

func startConsumerBroker(t *testing.T, lifetime time.Duration) *consumerBroker {
	t.Helper()
	secret := "consumer-secret-" + randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(lifetime), oauthtest.WithClient("app", secret))
	t.Cleanup(idp.Close)
	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
	createCredential(t, sb.url, sb.key, "cred", idp.TokenURL(), secret)
	return &consumerBroker{servedBroker: sb, idp: idp, secret: secret}
}

func createCredential(t *testing.T, url, key, name, tokenURL, secret string) {
	t.Helper()
	if st := apiDo(t, "POST", url+"/v1/credentials", key, map[string]any{
		"name": name, "token_url": tokenURL, "grant_type": "client_credentials",
		"client_id": "app", "client_secret": secret,
	}, nil); st != http.StatusCreated {
		t.Fatalf("create credential %s: %d", name, st)
	}
}

// runAgent runs `tokenkeeper agent args...` through run until the test ends.
type runningAgent struct {
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t *testing.T, env map[string]string, args ...string) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		ra.done <- run(ctx, append([]string{"tokenkeeper", "agent"}, args...), func(k string) string { return env[k] },
			strings.NewReader(""), &syncBuffer{}, ra.stderr)
	}()
	waitFor(t, "the agent to start", 15*time.Second, func() string {
		select {
		case err := <-ra.done:
			t.Fatalf("agent exited: %v\n%s", err, ra.stderr.String())
		default:
		}
		if strings.Contains(ra.stderr.String(), "agent running") {
			return "ok"
		}
		return ""
	})
	t.Cleanup(func() { ra.stop(t) })
	return ra
}

func (ra *runningAgent) stop(t *testing.T) {
	ra.cancel()
	select {
	case err := <-ra.done:
		if err != nil {
			t.Errorf("agent returned %v", err)
		}
		ra.done <- nil
	case <-time.After(15 * time.Second):
		t.Error("the agent did not stop within 15 s")
	}
}

type tokenFile struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at"`
}

func readTokenFile(t *testing.T, path string) (tokenFile, bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return tokenFile{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var tf tokenFile
	if err := json.Unmarshal(b, &tf); err != nil {
		t.Fatalf("%s is not the JSON template: %q", path, b)
	}
	return tf, true
}

// The agent writes each template, with the mode asked for, renews the files
// before their tokens expire, runs a sink's command after each change, and
// reloads its configuration on SIGHUP (a bad new one is logged and the
// running one kept). On exit it removes or empties the files.
func TestAgentSinksRenewalAndReload(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: waits for several 2-second tokens to be renewed (about 10 s)")
	}
	b := startConsumerBroker(t, 2*time.Second)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte(b.key+"\n"), 0o600)
	cfgFile := filepath.Join(dir, "agent.json")
	events := filepath.Join(dir, "events")
	writeConfig := func(extra string) {
		cfg := fmt.Sprintf(`{
  "server": %q,
  "api_key_file": %q,
  "sinks": [
    {"credential": "cred", "path": "tok.json", "template": "json"},
    {"credential": "cred", "path": "tok.raw"},
    {"credential": "cred", "path": "tok.hdr", "template": "header", "mode": "0640"},
    {"credential": "cred", "path": "tok.env", "template": "env:CRED_TOKEN", "on_expiry": "empty",
     "command": ["sh", "-c", "echo \"$TOKENKEEPER_SINK_EVENT $TOKENKEEPER_SINK_CREDENTIAL ${TOKENKEEPER_API_KEY:-nokey}\" >> %s"]}%s
  ]
}`, b.url, keyFile, events, extra)
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("")
	ag := startAgent(t, nil, "--config", cfgFile, "--log-level", "debug")
	_ = ag

	first, ok := readTokenFile(t, filepath.Join(dir, "tok.json"))
	if !ok || !b.idp.ValidAccessToken(first.AccessToken) || first.TokenType != "Bearer" || !first.ExpiresAt.After(time.Now()) {
		t.Fatalf("tok.json after start: %+v, present %v", first, ok)
	}
	check := func(name, prefix, suffix string, mode os.FileMode) {
		t.Helper()
		bs, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		s := string(bs)
		if !strings.HasPrefix(s, prefix) || !strings.HasSuffix(s, suffix) {
			t.Errorf("%s = %q, want %q...%q", name, s, prefix, suffix)
		}
		if tok := strings.TrimSuffix(strings.TrimPrefix(s, prefix), suffix); !b.idp.ValidAccessToken(tok) {
			t.Errorf("%s holds a token the provider does not accept", name)
		}
		fi, _ := os.Stat(filepath.Join(dir, name))
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	check("tok.raw", "", "", 0o600)
	check("tok.hdr", "Authorization: Bearer ", "\n", 0o640)
	check("tok.env", "CRED_TOKEN=", "\n", 0o600)

	// Renewal: over 7 s of 2-second tokens, every read is valid and the
	// token changes several times.
	seen := map[string]bool{}
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		tf, ok := readTokenFile(t, filepath.Join(dir, "tok.json"))
		if !ok {
			t.Fatal("tok.json disappeared while the broker was up")
		}
		if !b.idp.ValidAccessToken(tf.AccessToken) {
			t.Fatal("tok.json holds a token the provider does not accept")
		}
		seen[tf.AccessToken] = true
	}
	if len(seen) < 3 {
		t.Errorf("only %d distinct tokens in 7 s of 2-second tokens", len(seen))
	}
	ev, _ := os.ReadFile(events)
	if n := strings.Count(string(ev), "updated cred nokey\n"); n < 3 {
		t.Errorf("the sink's command ran %d times for updates (want >= 3); events:\n%s", n, ev)
	}

	// A bad configuration on SIGHUP: logged, the running one kept.
	os.WriteFile(cfgFile, []byte(`{"sinks": [`+"\n"+`{"credential": "cred", "path": "x", "template": "yaml"}]}`), 0o600)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload to be logged", 5*time.Second, func() string {
		if strings.Contains(ag.stderr.String(), "reload failed") && strings.Contains(ag.stderr.String(), `agent.json:2: sink \"cred\": template \"yaml\"`) {
			return "ok"
		}
		return ""
	})
	if tf, ok := readTokenFile(t, filepath.Join(dir, "tok.json")); !ok || !b.idp.ValidAccessToken(tf.AccessToken) {
		t.Fatal("a bad reload disturbed a running sink")
	}

	// A good one: a new sink appears, the others keep running.
	writeConfig(`,
    {"credential": "cred", "path": "new.raw"}`)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, "the new sink's file", 10*time.Second, func() string {
		if bs, err := os.ReadFile(filepath.Join(dir, "new.raw")); err == nil && b.idp.ValidAccessToken(string(bs)) {
			return "ok"
		}
		return ""
	})

	ag.stop(t)
	for _, name := range []string{"tok.json", "tok.raw", "tok.hdr", "new.raw"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after the agent stopped (on_expiry remove)", name)
		}
	}
	if bs, err := os.ReadFile(filepath.Join(dir, "tok.env")); err != nil || len(bs) != 0 {
		t.Errorf("tok.env after the agent stopped: %q, %v; want an empty file (on_expiry empty)", bs, err)
	}
	ev, _ = os.ReadFile(events)
	if !strings.HasSuffix(string(ev), "expired cred nokey\n") {
		t.Errorf("the last command run was not for the expiry: %q", ev)
	}
	for tok := range seen {
		if strings.Contains(ag.stderr.String(), tok) {
			t.Fatal("a token appears in the agent's log")
		}
	}
	if strings.Contains(ag.stderr.String(), b.key) {
		t.Fatal("the API key appears in the agent's log")
	}
}

// A configuration naming an unknown credential, an unwritable path or a bad
// template fails at start, with the line and the reason, and writes nothing.
func TestAgentBadConfigFailsAtStart(t *testing.T) {
	b := startConsumerBroker(t, time.Hour)
	dir := t.TempDir()
	env := map[string]string{"TOKENKEEPER_SERVER": b.url, "TOKENKEEPER_API_KEY": b.key}
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, nil, 0o600)
	cases := []struct{ name, sink, want string }{
		{"unknown credential", `{"credential": "nope", "path": "nope.tok"}`, `agent.json:4: sink "nope": credential "nope"`},
		{"missing directory", `{"credential": "cred", "path": "missing/x.tok"}`, `agent.json:4: sink "cred": path ` + filepath.Join(dir, "missing", "x.tok") + `: the directory`},
		{"not a directory", fmt.Sprintf(`{"credential": "cred", "path": %q}`, filepath.Join(notDir, "x")), `agent.json:4: sink "cred": path ` + filepath.Join(notDir, "x") + `: ` + notDir + ` is not a directory`},
		{"bad template", `{"credential": "cred", "path": "t.tok", "template": "{{.Token}}"}`, `agent.json:4: sink "cred": template "{{.Token}}": expected raw, header, json or env:VAR`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "agent.json")
			os.WriteFile(cfg, []byte("{\"sinks\": [\n  {\"credential\": \"cred\", \"path\": \"good.tok\"},\n\n  "+c.sink+"\n]}\n"), 0o600)
			var stderr syncBuffer
			err := run(context.Background(), []string{"tokenkeeper", "agent", "--config", cfg}, func(k string) string { return env[k] },
				strings.NewReader(""), &syncBuffer{}, &stderr)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "good.tok")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed start wrote the good sink's file")
			}
		})
	}
	// Flags for one sink: an unknown credential too.
	err := run(context.Background(), []string{"tokenkeeper", "agent", "--credential", "nope", "--path", filepath.Join(dir, "n.tok")},
		func(k string) string { return env[k] }, strings.NewReader(""), &syncBuffer{}, &syncBuffer{})
	if err == nil || !strings.Contains(err.Error(), `credential "nope"`) || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown credential by flags: %v", err)
	}
	for _, args := range [][]string{{}, {"--config", "x", "--credential", "c"}, {"--credential", "c"}, {"--config", "x", "--", "true"}} {
		err := run(context.Background(), append([]string{"tokenkeeper", "agent"}, args...), func(k string) string { return env[k] },
			strings.NewReader(""), &syncBuffer{}, &syncBuffer{})
		if exitCode(err) != 2 {
			t.Errorf("agent %v: %v (exit %d), want a usage error", args, err, exitCode(err))
		}
	}
}

// The agent as a service client of /oauth2/token, with one sink given by
// flags and a command after --.
func TestAgentAsServiceClient(t *testing.T) {
	b := startConsumerBroker(t, time.Hour)
	var cl struct {
		ClientSecret string `json:"client_secret"`
	}
	if st := apiDo(t, "POST", b.url+"/v1/clients", b.key, map[string]any{"client_id": "agentsvc", "credentials": []string{"cred"}}, &cl); st != http.StatusCreated {
		t.Fatalf("create client: %d", st)
	}
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte(cl.ClientSecret), 0o600)
	tok := filepath.Join(dir, "tok")
	marker := filepath.Join(dir, "ran")
	startAgent(t, map[string]string{"TOKENKEEPER_SERVER": b.url}, "--client-id", "agentsvc", "--client-secret-file", secretFile,
		"--credential", "cred", "--path", tok, "--", "touch", marker)
	bs, err := os.ReadFile(tok)
	if err != nil || !b.idp.ValidAccessToken(string(bs)) {
		t.Fatalf("token file: %v", err)
	}
	waitFor(t, "the command to run", 5*time.Second, func() string {
		if _, err := os.Stat(marker); err == nil {
			return "ok"
		}
		return ""
	})
	// A credential the client was not granted fails at start.
	createCredential(t, b.url, b.key, "other", b.idp.TokenURL(), b.secret)
	err = run(context.Background(), []string{"tokenkeeper", "agent", "--server", b.url, "--client-id", "agentsvc",
		"--client-secret-file", secretFile, "--credential", "other", "--path", filepath.Join(dir, "other")},
		os.Getenv, strings.NewReader(""), &syncBuffer{}, &syncBuffer{})
	if err == nil || !strings.Contains(err.Error(), `credential "other"`) || !strings.Contains(err.Error(), "invalid_scope") {
		t.Errorf("ungranted credential: %v", err)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The agent kill test: the agent runs for 30 s with 3-second tokens while
// the broker (the real binary) is SIGKILLed and restarted three times, once
// for less than a token's life and twice for longer. Every read of a file
// that holds a token finds a token the provider accepts; while the broker is
// down past the token's life, each file reaches the state its on_expiry
// promises; after each restart the files hold valid tokens again.
func TestAgentBrokerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: builds the binary and runs for 30 s")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	secret := "agent-kill-secret-" + randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(3*time.Second), oauthtest.WithClient("app", secret))
	defer idp.Close()
	addr := freePort(t)
	args := []string{"--database", filepath.Join(dir, "tk.db"), "--addr", addr, "--provider-timeout", "2s"}
	p := startProc(t, bin, args...)
	key := p.key
	createCredential(t, p.url, key, "cred", idp.TokenURL(), secret)

	cfg := filepath.Join(dir, "agent.json")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`{"server": %q, "sinks": [
  {"credential": "cred", "path": "removed.json", "template": "json"},
  {"credential": "cred", "path": "emptied.json", "template": "json", "on_expiry": "empty"}
]}`, p.url)), 0o600)
	ag := startAgent(t, map[string]string{"TOKENKEEPER_API_KEY": key}, "--config", cfg, "--retry-max", "1s")

	type stats struct{ valid, invalid, absent, empty int }
	var st [2]stats
	files := [2]string{filepath.Join(dir, "removed.json"), filepath.Join(dir, "emptied.json")}
	// read reads both files once; it reports whether each was in its
	// no-token state.
	read := func() (cleared [2]bool) {
		for i, f := range files {
			b, err := os.ReadFile(f)
			switch {
			case errors.Is(err, os.ErrNotExist):
				st[i].absent++
				cleared[i] = i == 0
				if i == 1 {
					t.Errorf("%s was removed; its on_expiry is empty", f)
				}
			case err != nil:
				t.Fatal(err)
			case len(b) == 0:
				st[i].empty++
				cleared[i] = i == 1
				if i == 0 {
					t.Errorf("%s was emptied; its on_expiry is remove", f)
				}
			default:
				var tf tokenFile
				if err := json.Unmarshal(b, &tf); err != nil {
					t.Fatalf("%s holds %q", f, b)
				}
				// The provider accepts it, and the agent keeps it at most
				// a few seconds past its advertised expiry, while the
				// broker's replacement is on its way (the broker
				// advertises an expiry a margin before it replaces a token).
				if idp.ValidAccessToken(tf.AccessToken) && tf.ExpiresAt.Add(5*time.Second).After(time.Now()) {
					st[i].valid++
				} else {
					st[i].invalid++
					t.Errorf("%s holds a token the provider does not accept (expires_at %v)", f, tf.ExpiresAt)
				}
			}
		}
		return cleared
	}
	// watch reads every 20 ms for d; it returns whether both files were
	// seen in their no-token state, and whether both held a valid token at
	// the end.
	watch := func(d time.Duration) (clearedSeen bool) {
		seen := [2]bool{}
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			c := read()
			seen[0] = seen[0] || c[0]
			seen[1] = seen[1] || c[1]
		}
		return seen[0] && seen[1]
	}
	validNow := func(what string) {
		t.Helper()
		waitFor(t, what, 10*time.Second, func() string {
			for _, f := range files {
				var tf tokenFile
				if b, err := os.ReadFile(f); err != nil || json.Unmarshal(b, &tf) != nil || !idp.ValidAccessToken(tf.AccessToken) {
					return ""
				}
			}
			return "ok"
		})
	}
	start := time.Now()
	validNow("valid tokens after start")
	kill := func() {
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.cmd.Wait()
	}
	// Up 5 s; down 6 s (past a token's life); up 5 s; down 1 s; up 4 s;
	// down 5 s; up until 30 s.
	for i, phase := range []struct {
		up, down time.Duration
	}{{5 * time.Second, 6 * time.Second}, {5 * time.Second, time.Second}, {4 * time.Second, 5 * time.Second}} {
		watch(phase.up)
		kill()
		cleared := watch(phase.down)
		if phase.down > 4*time.Second && !cleared {
			t.Errorf("outage %d (%v): the files never reached their no-token state", i+1, phase.down)
		}
		p = startProc(t, bin, args...)
		validNow(fmt.Sprintf("valid tokens after restart %d", i+1))
	}
	watch(max(30*time.Second-time.Since(start), time.Second))
	validNow("valid tokens at the end")
	t.Logf("agent kill test, %v: removed.json %+v; emptied.json %+v (reads: valid token, expired token, absent, empty)",
		time.Since(start).Round(time.Second), st[0], st[1])
	if st[0].invalid+st[1].invalid != 0 {
		t.Errorf("%d reads found an expired token", st[0].invalid+st[1].invalid)
	}
	ag.stop(t)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Wait()
}

// The agent configurations in the README and in the agent's help are valid.
func TestAgentConfigExamplesParse(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var examples []string
	for _, m := range regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(m[1], `"sinks"`) {
			examples = append(examples, m[1])
		}
	}
	help := regexp.MustCompile(`(?s)The configuration is JSON:\n(.*?\n  \})\n`).FindStringSubmatch(agentAbout)
	if len(examples) == 0 || help == nil {
		t.Fatalf("examples not found: %d in the README, help %v", len(examples), help != nil)
	}
	for _, ex := range append(examples, help[1]) {
		cfg, err := agent.ParseConfig([]byte(ex), "/etc/tokenkeeper/agent.json")
		if err != nil {
			t.Errorf("%v in\n%s", err, ex)
			continue
		}
		if len(cfg.Sinks) != 2 || cfg.Sinks[1].Template != "env:PAYMENTS_TOKEN" {
			t.Errorf("parsed %+v", cfg.Sinks)
		}
	}
}

// A credential deleted at the broker: the source stops for good, the file is
// removed when its token expires, and once the credential is added again the
// sink tries again and the file comes back.
func TestAgentCredentialDeletedAndAddedAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: waits for 2-second tokens to expire (about 5 s)")
	}
	b := startConsumerBroker(t, 2*time.Second)
	logs := &syncBuffer{}
	ag := agent.New(agent.Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), BackoffMax: time.Second, PermanentRetry: time.Second})
	path := filepath.Join(t.TempDir(), "tok")
	if err := ag.Apply(context.Background(), &agent.Config{Server: b.url, APIKey: b.key,
		Sinks: []agent.Sink{{Credential: "cred", Path: path}}}); err != nil {
		t.Fatal(err)
	}
	defer ag.Stop()
	valid := func() string {
		if bs, err := os.ReadFile(path); err == nil && b.idp.ValidAccessToken(string(bs)) {
			return "ok"
		}
		return ""
	}
	waitFor(t, "the first token", 5*time.Second, valid)
	if st := apiDo(t, "DELETE", b.url+"/v1/credentials/cred", b.key, nil, nil); st != http.StatusNoContent && st != http.StatusOK {
		t.Fatalf("delete: %d", st)
	}
	waitFor(t, "the file to be removed", 10*time.Second, func() string {
		if bs, err := os.ReadFile(path); err == nil {
			if !b.idp.ValidAccessToken(string(bs)) {
				t.Fatal("the file holds an expired token")
			}
			return ""
		}
		return "ok"
	})
	waitFor(t, "the permanent failure to be noticed", 5*time.Second, func() string {
		if strings.Contains(logs.String(), "refuses this credential") {
			return "ok"
		}
		return ""
	})
	createCredential(t, b.url, b.key, "cred", b.idp.TokenURL(), b.secret)
	waitFor(t, "a token after the credential came back", 10*time.Second, valid)
	ag.Stop()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Error("the file survived Stop")
	}
	if strings.Contains(logs.String(), b.key) {
		t.Error("the API key is in the log")
	}
}
