package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// readmeBlock is one ```sh block of README.md.
type readmeBlock struct {
	line int // of the opening fence
	text string
}

// readmeShellBlocks returns the sh blocks of README.md.
func readmeShellBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []readmeBlock
	var cur *readmeBlock
	for i, l := range strings.Split(string(data), "\n") {
		switch {
		case cur == nil && strings.TrimSpace(l) == "```sh":
			cur = &readmeBlock{line: i + 1}
		case cur != nil && strings.TrimSpace(l) == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += l + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("README.md:%d: an sh block is not closed", cur.line)
	}
	return blocks
}

// talksToBroker: a block that calls curl, uses $B, or runs a client command
// of tokenkeeper. Commands that do not talk to a running broker (serve,
// init, migrate, demo, bench, testidp, go ...) do not count.
var talksToBroker = regexp.MustCompile(`\bcurl\b|\$B\b|\$\{B\}|\btokenkeeper (credential|token|apikey|keys|user|client|audit|agent|exec|git-credential|login|logout|whoami|admin)\b`)

// notRunMarker opts a block out, with its reason.
var notRunMarker = regexp.MustCompile(`(?m)^\s*# README test: not run: (.*)$`)

// exampleHost finds host names of the example domains that a block would
// call and the test has not mapped.
var exampleHost = regexp.MustCompile(`https?://[a-z0-9.-]+\.example\b[^\s'"]*`)

// TestREADMEExamples runs every sh block of README.md that talks to a
// broker, in README order, against one live broker (run on :0) and the
// test provider: a pasted example must work. The example hosts are mapped
// to the test servers, placeholders (tk_..., "...") get real values, $B,
// $K and $TOKENKEEPER_API_KEY are set, the tokenkeeper on PATH is this
// build, and curl fails on any non-2xx answer. A block fails on a non-zero
// exit or any output on stderr. A block that cannot run here opts out with
// a "# README test: not run: REASON" line.
func TestREADMEExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: builds the binary (about 5 s) and runs every README example")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the README examples need curl")
	}
	if _, err := exec.LookPath("jq"); err != nil {
		t.Fatal("the README examples need jq (.ci/run installs it)")
	}
	dir := t.TempDir()
	binDir := filepath.Join(dir, "bin")
	work := filepath.Join(dir, "work")
	for _, d := range []string{binDir, work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	buildBinary(t, binDir)

	// The test provider knows the examples' clients.
	abcSecret, svcSecret := "abc-secret-"+randomString(), "svc-secret-"+randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("abc", abcSecret), oauthtest.WithClient("svc", svcSecret))
	defer idp.Close()
	// Files the examples read.
	googleSecret := "google-secret-" + randomString()
	idp.AddClient("123.apps", googleSecret)
	for name, content := range map[string]string{"secret.txt": abcSecret, "rt.txt": idp.IssueRefreshToken("abc", ""),
		"google.txt": googleSecret, "alice-rt.txt": idp.IssueRefreshToken("123.apps", "openid email"),
		"new.txt": "google-secret-rotated-" + randomString()} {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sb := startServe(t, nil, "--database", filepath.Join(dir, "tk.db"))

	// The account examples' admin user, as `tokenkeeper init --admin-user
	// alice` would have made it, and a session of hers.
	alicePassword := "alice-password-" + randomString()
	if st := apiDo(t, "POST", sb.url+"/v1/users", sb.key, map[string]string{"username": "alice", "password": alicePassword, "role": "admin"}, nil); st != http.StatusCreated {
		t.Fatalf("create alice: %d", st)
	}
	var session struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if st := apiDo(t, "POST", sb.url+"/v1/auth/login", "", map[string]string{"username": "alice", "password": alicePassword}, &session); st != http.StatusOK {
		t.Fatalf("login: %d", st)
	}

	// What the examples say, and what it means here.
	replacements := []struct{ from, to string }{
		{"http://127.0.0.1:8080", sb.url},
		{"https://github.example/oauth/token", idp.TokenURL()},
		{"https://idp.example/token", idp.TokenURL()},
		{"https://idp.example/authorize", idp.AuthorizeURL()},
		{"https://accounts.google.example/o/oauth2/auth", idp.AuthorizeURL()},
		{"https://oauth2.google.example/token", idp.TokenURL()},
		{"https://api.github.example/user", idp.ResourceURL()},
		{"https://api.example/v1/things", idp.ResourceURL()},
		{"export TOKENKEEPER_API_KEY=tk_...", "export TOKENKEEPER_API_KEY=" + sb.key},
		{`"client_id":"svc","client_secret":"..."`, `"client_id":"svc","client_secret":"` + svcSecret + `"`},
		{`"username":"alice","password":"..."`, `"username":"alice","password":"` + alicePassword + `"`},
		{"tkrt_...", session.RefreshToken},
		{"eyJ...", session.AccessToken},
		// Terminal prompts, answered.
		{"tokenkeeper login alice", "tokenkeeper login alice --password-stdin <<<'" + alicePassword + "'"},
		{"tokenkeeper user add victor --role viewer", "tokenkeeper user add victor --role viewer --password-stdin <<<'victor-password-long'"},
	}
	// curl fails on a non-2xx answer (keeping its body for the message)
	// and prints its own errors.
	preamble := "set -euo pipefail\ncurl() { command curl --fail-with-body -sS \"$@\"; }\n"
	env := append(os.Environ(),
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"B="+sb.url, "K=Authorization: Bearer "+sb.key,
		"TOKENKEEPER_SERVER="+sb.url, "TOKENKEEPER_API_KEY="+sb.key,
	)

	ran := 0
	for _, b := range readmeShellBlocks(t) {
		if !talksToBroker.MatchString(b.text) {
			continue
		}
		if m := notRunMarker.FindStringSubmatch(b.text); m != nil {
			if strings.TrimSpace(m[1]) == "" {
				t.Errorf("README.md:%d: a block not run must say why", b.line)
			}
			continue
		}
		script := b.text
		for _, r := range replacements {
			script = strings.ReplaceAll(script, r.from, r.to)
		}
		if h := exampleHost.FindString(script); h != "" {
			t.Errorf("README.md:%d: %s is not mapped to a test server: add it to the replacements of TestREADMEExamples", b.line, h)
			continue
		}
		ran++
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, "bash", "-c", preamble+script)
		cmd.Dir, cmd.Env = work, env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("README.md:%d: the example fails: %v\n--- example ---\n%s--- stdout ---\n%s--- stderr ---\n%s", b.line, err, b.text, stdout.String(), stderr.String())
			continue
		}
		for _, secret := range []string{abcSecret, svcSecret, alicePassword} {
			if strings.Contains(stdout.String(), secret) {
				t.Errorf("README.md:%d: the example's output holds a secret it was given", b.line)
			}
		}
	}
	if ran < 5 {
		t.Fatalf("only %d README examples ran: the block detection is broken", ran)
	}
	t.Logf("ran %d README examples", ran)
}
