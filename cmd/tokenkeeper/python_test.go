package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// python is Debian's interpreter, named explicitly: another python3 earlier
// in PATH (pyenv) would not see Debian's packages.
const python = "/usr/bin/python3"

// requirePython skips the test unless python3 and the modules are installed;
// in CI ($CI=true) their absence is a failure.
func requirePython(t *testing.T, modules ...string) {
	t.Helper()
	missing := func(what string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (.ci/run installs python3-authlib and python3-requests-oauthlib)", what)
		}
		t.Skipf("%s is not installed (apt-get install python3-authlib python3-requests-oauthlib)", what)
	}
	if _, err := os.Stat(python); err != nil {
		missing(python)
	}
	for _, m := range modules {
		if out, err := exec.Command(python, "-c", "import "+m).CombinedOutput(); err != nil {
			missing("the Python module " + m + " (" + strings.TrimSpace(string(out)) + ")")
		}
	}
}

// pythonCounts is what each script prints.
type pythonCounts struct {
	Library  string         `json:"library"`
	Requests int            `json:"requests"`
	OK       int            `json:"ok"`
	Failures int            `json:"failures"`
	Statuses map[string]int `json:"statuses"`
	Tokens   int            `json:"tokens"`
}

// Python's two OAuth2 libraries, as Debian packages them, take tokens from
// the broker's /oauth2/token as a service client for 20 s, with 3-second
// upstream tokens, and call oauthtest's protected resource with them: no
// request fails.
func TestPythonOAuthLibraries(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: runs two Python clients for 20 s")
	}
	requirePython(t, "authlib", "requests_oauthlib")
	b := startConsumerBroker(t, 3*time.Second)
	var cl struct {
		ClientSecret string `json:"client_secret"`
	}
	if st := apiDo(t, "POST", b.url+"/v1/clients", b.key, map[string]any{"client_id": "pyclient", "credentials": []string{"cred"}}, &cl); st != http.StatusCreated {
		t.Fatalf("create client: %d", st)
	}
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte(cl.ClientSecret+"\n"), 0o600)

	const seconds = "20"
	scripts := []string{"authlib_client.py", "requests_oauthlib_client.py"}
	results := make([]pythonCounts, len(scripts))
	var wg sync.WaitGroup
	for i, script := range scripts {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, python, filepath.Join("testdata", "python", script),
				b.url+"/oauth2/token", "pyclient", secretFile, "cred", b.idp.ResourceURL(), seconds)
			// Both libraries refuse http token endpoints unless told: the
			// broker here is on loopback.
			cmd.Env = []string{"PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1",
				"OAUTHLIB_INSECURE_TRANSPORT=1", "AUTHLIB_INSECURE_TRANSPORT=1"}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Errorf("%s: %v\n%s", script, err, stderr.String())
				return
			}
			if err := json.Unmarshal(stdout.Bytes(), &results[i]); err != nil {
				t.Errorf("%s printed %q: %v", script, stdout.String(), err)
			}
		})
	}
	wg.Wait()
	for _, r := range results {
		if r.Library == "" {
			continue // reported above
		}
		t.Logf("%s: %d requests in %s s, %d ok, %d failed, statuses %v, %d distinct tokens",
			r.Library, r.Requests, seconds, r.OK, r.Failures, r.Statuses, r.Tokens)
		if r.Failures != 0 || r.OK != r.Requests {
			t.Errorf("%s: %d of %d requests failed: %v", r.Library, r.Failures, r.Requests, r.Statuses)
		}
		if r.Requests < 100 {
			t.Errorf("%s: only %d requests in %s s", r.Library, r.Requests, seconds)
		}
		// 20 s of 3-second tokens: the library must have taken new ones.
		if r.Tokens < 6 {
			t.Errorf("%s: only %d distinct tokens in %s s of 3-second tokens", r.Library, r.Tokens, seconds)
		}
	}
}

// The README's Python examples are the scripts' README blocks, verbatim, so
// the test above runs them.
func TestREADMEPythonExamplesAreTested(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```python\n(.*?)```").FindAllSubmatch(readme, -1)
	if len(blocks) < 2 {
		t.Fatalf("the README has %d Python examples, want at least 2", len(blocks))
	}
	var scripts []string
	for _, s := range []string{"authlib_client.py", "requests_oauthlib_client.py"} {
		b, err := os.ReadFile(filepath.Join("testdata", "python", s))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?s)# README: [a-z-]+ begin\n(.*?)# README: [a-z-]+ end\n`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s has no README block", s)
		}
		scripts = append(scripts, string(m[1]))
	}
	for _, blk := range blocks {
		found := false
		for _, s := range scripts {
			if strings.TrimSpace(s) == strings.TrimSpace(string(blk[1])) {
				found = true
			}
		}
		if !found {
			t.Errorf("this README Python example is not a tested script's README block:\n%s", blk[1])
		}
	}
}
