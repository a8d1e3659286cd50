package console_test

import (
	"context"
	"encoding/json"
	"html"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
)

// TestSnippetsRun runs the curl and Python snippets of a credential's page
// as shown, with a consumer key in TOKENKEEPER_API_KEY: each reads the
// credential's current token.
func TestSnippetsRun(t *testing.T) {
	h := newHarness(t)
	h.credential("cal")
	key, rec := tkhttp.NewAPIKey("reader", tokenkeeper.RoleConsumer, []string{"cal"})
	if err := h.store.CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	b := h.browser()
	b.signIn(viewerUser, viewerPassword)
	b.get("/ui/credentials/cal")
	snippet := func(id string) string {
		m := regexp.MustCompile(`(?s)<code id="snippet-` + id + `">(.*?)</code>`).FindStringSubmatch(b.last)
		if m == nil {
			t.Fatalf("no %s snippet on the page", id)
		}
		return html.UnescapeString(m[1])
	}
	c, err := h.store.Credential(context.Background(), "cal")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "TOKENKEEPER_API_KEY="+key)
	need := func(path string) {
		if _, err := os.Stat(path); err != nil {
			if ciRun() {
				t.Fatalf("%s is required in CI", path)
			}
			t.Skipf("%s is not installed", path)
		}
	}

	if _, err := exec.LookPath("curl"); err != nil {
		if ciRun() {
			t.Fatal("curl is required in CI")
		}
		t.Skip("curl is not installed")
	}
	cmd := exec.Command("/bin/sh", "-c", snippet("curl"))
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl snippet: %v %s", err, out)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(out, &tok); err != nil || tok.AccessToken != c.Token.AccessToken {
		t.Fatalf("curl snippet read %q: %v", out, err)
	}

	const python = "/usr/bin/python3" // Debian's, with python3-requests
	need(python)
	if out, err := exec.Command(python, "-c", "import requests").CombinedOutput(); err != nil {
		if ciRun() {
			t.Fatalf("python3-requests is required in CI: %s", out)
		}
		t.Skipf("python3-requests is not installed: %s", out)
	}
	cmd = exec.Command(python, "-c", snippet("python")+"\nprint(access_token)")
	cmd.Env = env
	out, err = cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != c.Token.AccessToken {
		t.Fatalf("python snippet: %v, printed %d bytes", err, len(out))
	}
}
