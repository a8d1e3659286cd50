package main

import (
	"context"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The helper's side of git's protocol: get answers for mapped hosts only,
// and never with a token over plain http to another machine; store does
// nothing; erase reports the rejected token, so the broker refreshes.
func TestGitCredentialProtocol(t *testing.T) {
	b := startConsumerBroker(t, time.Hour)
	env := map[string]string{"TOKENKEEPER_SERVER": b.url, "TOKENKEEPER_API_KEY": b.key}
	helper := func(input string, args ...string) (string, error) {
		var out syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper", "git-credential"}, args...), func(k string) string { return env[k] },
			strings.NewReader(input), &out, &syncBuffer{})
		return out.String(), err
	}
	attrs := func(out string) map[string]string {
		m := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				m[k] = v
			}
		}
		return m
	}
	out, err := helper("protocol=https\nhost=git.example.com\n\n", "--map", "git.example.com=cred", "get")
	a := attrs(out)
	if err != nil || a["username"] != "x-access-token" || !b.idp.ValidAccessToken(a["password"]) || a["password_expiry_utc"] == "" {
		t.Fatalf("get for a mapped host: %v %q", err, strings.ReplaceAll(out, a["password"], "<token>"))
	}
	first := a["password"]
	for _, c := range []struct{ name, input string }{
		{"unmapped host", "protocol=https\nhost=other.example.com\n\n"},
		{"plain http to another machine", "protocol=http\nhost=git.example.com\n\n"},
		{"ssh", "protocol=ssh\nhost=git.example.com\n\n"},
	} {
		if out, err := helper(c.input, "--map", "git.example.com=cred", "get"); err != nil || out != "" {
			t.Errorf("%s: %q, %v; want no answer", c.name, out, err)
		}
	}
	// --credential covers every host; a url attribute is understood; http
	// to loopback is allowed; --username is given back.
	out, err = helper("url=http://127.0.0.1:9/repo.git\n", "--credential", "cred", "--username", "bot", "get")
	if a := attrs(out); err != nil || a["username"] != "bot" || a["password"] != first {
		t.Errorf("get with --credential for loopback http: %v", err)
	}
	if out, err := helper("protocol=https\nhost=h\nusername=x\npassword=y\n\n", "--credential", "cred", "store"); err != nil || out != "" {
		t.Errorf("store: %q, %v", out, err)
	}
	// erase with the current token: the broker refreshes; get then gives a
	// new token.
	if _, err := helper("protocol=https\nhost=h\nusername=x-access-token\npassword="+first+"\n\n", "--credential", "cred", "erase"); err != nil {
		t.Fatalf("erase: %v", err)
	}
	out, _ = helper("protocol=https\nhost=h\n\n", "--credential", "cred", "get")
	if second := attrs(out)["password"]; second == first || !b.idp.ValidAccessToken(second) {
		t.Errorf("after erase of the current token, get did not give a new valid token")
	}
	for _, args := range [][]string{{"get"}, {"--credential", "cred"}, {"--credential", "cred", "fetch"}, {"--map", "nohost", "get"}} {
		if _, err := helper("", args...); exitCode(err) != 2 {
			t.Errorf("git-credential %v: %v, want a usage error", args, err)
		}
	}
	if _, err := helper("garbage\n", "--credential", "cred", "get"); err == nil {
		t.Error("malformed input was accepted")
	}
}

// git clone over smart HTTP from a loopback server that demands a valid
// token as the Basic password, with tokenkeeper as git's credential helper.
func TestGitCloneThroughCredentialHelper(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: builds the binary and runs git")
	}
	gitBin, err := exec.LookPath("git")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("git is required in CI (apt-get install git)")
		}
		t.Skip("git is not installed")
	}
	b := startConsumerBroker(t, time.Hour)
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	home := filepath.Join(dir, "home")
	os.Mkdir(home, 0o700)
	gitEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com"}
	git := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(gitBin, args...)
		cmd.Env = append(append([]string{}, gitEnv...), env...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// A bare repository with one commit.
	root := filepath.Join(dir, "srv")
	work := filepath.Join(dir, "work")
	for _, args := range [][]string{
		{"init", "-q", "--bare", filepath.Join(root, "repo.git")},
		{"init", "-q", work},
	} {
		if out, err := git(nil, args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	os.WriteFile(filepath.Join(work, "README"), []byte("cloned through tokenkeeper\n"), 0o644)
	for _, args := range [][]string{
		{"-C", work, "add", "README"},
		{"-C", work, "commit", "-q", "-m", "first"},
		{"-C", work, "push", "-q", filepath.Join(root, "repo.git"), "HEAD:refs/heads/main"},
		{"--git-dir", filepath.Join(root, "repo.git"), "symbolic-ref", "HEAD", "refs/heads/main"},
	} {
		if out, err := git(nil, args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}

	backend := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"}, Dir: root,
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	var authed, refused atomic.Int64
	var users atomicString
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || !b.idp.ValidAccessToken(pass) {
			refused.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "a valid token is required", http.StatusUnauthorized)
			return
		}
		authed.Add(1)
		users.set(user)
		backend.ServeHTTP(w, r)
	}))
	defer srv.Close()

	clientEnv := []string{"TOKENKEEPER_SERVER=" + b.url, "TOKENKEEPER_API_KEY=" + b.key}
	helper := "!'" + bin + "' git-credential --credential cred"
	dst := filepath.Join(dir, "clone")
	out, err := git(clientEnv, "-c", "credential.helper=", "-c", "credential.helper="+helper, "clone", "-q", srv.URL+"/repo.git", dst)
	if err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dst, "README"))
	if err != nil || string(got) != "cloned through tokenkeeper\n" {
		t.Fatalf("the clone holds %q, %v", got, err)
	}
	if authed.Load() == 0 || users.get() != "x-access-token" {
		t.Errorf("%d authenticated requests, user %q", authed.Load(), users.get())
	}
	t.Logf("git clone through the credential helper: %d requests refused without a token, %d served with the broker's token", refused.Load(), authed.Load())
	if strings.Contains(out, b.key) {
		t.Error("the API key appears in git's output")
	}

	// The same clone without the helper (or with a host it does not map)
	// is refused: the server really demands the token.
	out, err = git(clientEnv, "-c", "credential.helper=", "-c", "credential.helper=!'"+bin+"' git-credential --map elsewhere.example=cred",
		"clone", "-q", srv.URL+"/repo.git", filepath.Join(dir, "clone2"))
	if err == nil {
		t.Fatalf("a clone without a token succeeded:\n%s", out)
	}
}

// atomicString is a string set and read from several goroutines.
type atomicString struct{ v atomic.Value }

func (s *atomicString) set(v string) { s.v.Store(v) }
func (s *atomicString) get() string {
	v, _ := s.v.Load().(string)
	return v
}

func FuzzReadGitAttrs(f *testing.F) {
	f.Add("protocol=https\nhost=git.example.com\n\n")
	f.Add("url=http://127.0.0.1:8080/repo.git\npassword=x\n")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, in string) {
		attrs, err := readGitAttrs(strings.NewReader(in))
		if err != nil {
			return
		}
		name := credentialForGit(attrs, "fallback", hostMap{"git.example.com": "mapped"})
		switch name {
		case "":
		case "fallback", "mapped":
			// A token goes only to https, or http on loopback.
			if p := attrs["protocol"]; p != "https" && !(p == "http" && loopbackHost(strings.ToLower(attrs["host"]))) {
				t.Fatalf("answered for protocol %q host %q", p, attrs["host"])
			}
		default:
			t.Fatalf("credential %q", name)
		}
	})
}
