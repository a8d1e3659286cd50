package console_test

import (
	"context"
	"encoding/json"
	"html"
	"os"
	"os/exec"
	"path/filepath"
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

// TestGoSnippetRuns builds and runs the Go snippet of a credential's page
// as shown, in a program of its own against this module: it reads the
// credential's current token.
func TestGoSnippetRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("building a program takes a while")
	}
	h := newHarness(t)
	h.credential("cal")
	key, rec := tkhttp.NewAPIKey("reader", tokenkeeper.RoleConsumer, []string{"cal"})
	if err := h.store.CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	b := h.browser()
	b.signIn(viewerUser, viewerPassword)
	b.get("/ui/credentials/cal")
	m := regexp.MustCompile(`(?s)<code id="snippet-go">(.*?)</code>`).FindStringSubmatch(b.last)
	if m == nil {
		t.Fatal("no Go snippet on the page")
	}
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := strings.TrimSuffix(strings.TrimSpace(string(root)), "/go.mod") + "/internal/console/testdata/snippet-" + randomHex()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(dir)
		os.Remove(filepath.Dir(dir)) // testdata, when no other test uses it
	})
	prog := "package main\n\nimport (\n\t\"context\"\n\t\"fmt\"\n\t\"log\"\n\n\t\"golang.org/x/oauth2\"\n\n\t\"github.com/tokenkeeper/tokenkeeper/client\"\n)\n\n" +
		"func main() {\n\tctx := context.Background()\n" + indent(html.UnescapeString(m[1])) +
		"\n\t_ = httpClient\n\ttok, err := ts.Token()\n\tif err != nil {\n\t\tlog.Fatal(err)\n\t}\n\tfmt.Println(tok.AccessToken)\n}\n"
	if err := os.WriteFile(dir+"/main.go", []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TOKENKEEPER_API_KEY="+key, "TOKENKEEPER_SERVER="+h.url)
	out, err := cmd.CombinedOutput()
	c, _ := h.store.Credential(context.Background(), "cal")
	if err != nil || strings.TrimSpace(string(out)) != c.Token.AccessToken {
		t.Fatalf("go snippet: %v\n%s", err, prog)
	}
}

func indent(s string) string { return "\t" + strings.ReplaceAll(s, "\n", "\n\t") }

func randomHex() string { return strings.ToLower(strings.ReplaceAll(randomSecret(), "-", "")[3:15]) }
