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
	Replayed int            `json:"replayed"`
}

// Python's two OAuth2 libraries, as Debian packages them, take tokens from
// the broker's /oauth2/token as a service client for 20 s, with 3-second
// upstream tokens, and call oauthtest's protected resource with them: no
// request fails. At the same time plain requests, with no OAuth library,
// calls the same resource through the broker's proxy: no request fails
// either.
func TestPythonOAuthLibraries(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: runs two Python clients for 20 s")
	}
	requirePython(t, "authlib", "requests_oauthlib", "requests")
	b := startConsumerBroker(t, 3*time.Second)
	var cl struct {
		ClientSecret string `json:"client_secret"`
	}
	if st := apiDo(t, "POST", b.url+"/v1/clients", b.key, map[string]any{"client_id": "pyclient", "credentials": []string{"cred"}}, &cl); st != http.StatusCreated {
		t.Fatalf("create client: %d", st)
	}
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte(cl.ClientSecret+"\n"), 0o600)

	// The proxy: the credential's provider (created inline, named after
	// it) gets oauthtest's resource as its API, and a consumer key.
	if st := apiDo(t, "PATCH", b.url+"/v1/providers/cred", b.key, map[string]any{"api_base_url": b.idp.ResourceURL()}, nil); st != http.StatusOK {
		t.Fatalf("set api_base_url: %d", st)
	}
	var ck struct {
		Key string `json:"key"`
	}
	if st := apiDo(t, "POST", b.url+"/v1/apikeys", b.key, map[string]any{"name": "pyproxy", "role": "consumer", "credentials": []string{"cred"}}, &ck); st != http.StatusCreated {
		t.Fatalf("create consumer key: %d", st)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte(ck.Key+"\n"), 0o600)
	issued := b.idp.Stats().AccessTokensIssued

	const seconds = "20"
	scripts := []struct {
		name string
		args []string
	}{
		{"authlib_client.py", []string{b.url + "/oauth2/token", "pyclient", secretFile, "cred", b.idp.ResourceURL(), seconds}},
		{"requests_oauthlib_client.py", []string{b.url + "/oauth2/token", "pyclient", secretFile, "cred", b.idp.ResourceURL(), seconds}},
		{"requests_proxy_client.py", []string{b.url + "/v1/proxy/cred", keyFile, seconds}},
	}
	results := make([]pythonCounts, len(scripts))
	var wg sync.WaitGroup
	for i, sc := range scripts {
		script := sc.name
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, python, append([]string{filepath.Join("testdata", "python", script)}, sc.args...)...)
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
	// The proxy's client sees no token: count those the broker obtained
	// meanwhile, which the proxy presented in turn.
	results[2].Tokens = b.idp.Stats().AccessTokensIssued - issued
	for _, r := range results {
		if r.Library == "" {
			continue // reported above
		}
		t.Logf("%s: %d requests in %s s, %d ok, %d failed, statuses %v, %d distinct tokens, %d replayed by the proxy",
			r.Library, r.Requests, seconds, r.OK, r.Failures, r.Statuses, r.Tokens, r.Replayed)
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
	if len(blocks) < 3 {
		t.Fatalf("the README has %d Python examples, want at least 3", len(blocks))
	}
	var scripts []string
	for _, s := range []string{"authlib_client.py", "requests_oauthlib_client.py", "requests_proxy_client.py"} {
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
