package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// buildBinary builds cmd/tokenkeeper into dir and returns its path.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "tokenkeeper")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// proc is a `tokenkeeper serve` subprocess.
type proc struct {
	cmd  *exec.Cmd
	url  string
	key  string // the admin key, printed on the first start only
	logs *syncBuffer
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{logs: &syncBuffer{}}
	p.cmd = exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0", "--allow-private-token-urls"}, args...)...)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	p.cmd.Stderr = p.logs
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The URL is in the log (standard error); the admin key, printed
	// before it, on standard output.
	timeout := time.After(15 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for p.url == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("serve exited before serving:\n%s", p.logs.String())
			}
			if m := keyRE.FindStringSubmatch(l); m != nil && p.key == "" {
				p.key = m[1]
			}
		case <-tick.C:
			if m := urlRE.FindStringSubmatch(p.logs.String()); m != nil {
				p.url = m[1]
			}
		case <-timeout:
			t.Fatalf("serve did not start:\n%s", p.logs.String())
		}
	}
	for drained := false; !drained; {
		select {
		case l, ok := <-lines:
			if m := keyRE.FindStringSubmatch(l); ok && m != nil && p.key == "" {
				p.key = m[1]
			}
			drained = !ok
		case <-time.After(100 * time.Millisecond):
			drained = true
		}
	}
	go func() {
		for range lines {
		}
	}()
	return p
}

// The kill test: `tokenkeeper serve` is SIGKILLed during refresh activity and
// restarted, five times; every credential keeps working. The provider has a
// rotation grace period, so a kill between its answer and our commit costs
// nothing; the test reports how often that happened (grace reuses).
func TestKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: builds the binary and runs for about 15 s")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	secret := "kill-test-secret-" + randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(3*time.Second), oauthtest.WithRotation(true),
		oauthtest.WithReuseDetection(30*time.Second), oauthtest.WithClient("app", secret),
		oauthtest.WithLatency(20*time.Millisecond))
	defer idp.Close()
	db := filepath.Join(dir, "tk.db")
	args := []string{"--database", db, "--provider-timeout", "2s"}

	p := startProc(t, bin, args...)
	key := p.key
	if key == "" {
		t.Fatal("no admin key printed on first start")
	}
	const n = 20
	for i := range n {
		if st := apiDo(t, "POST", p.url+"/v1/credentials", key, map[string]any{
			"name": fmt.Sprintf("c%02d", i), "token_url": idp.TokenURL(), "grant_type": "refresh_token",
			"client_id": "app", "client_secret": secret, "refresh_token": idp.IssueRefreshToken("app", "read"),
		}, nil); st != http.StatusCreated {
			t.Fatalf("create: %d", st)
		}
	}
	checkAll := func(p *proc) {
		t.Helper()
		for i := range n {
			name := fmt.Sprintf("c%02d", i)
			waitFor(t, name+" serving a valid token", 15*time.Second, func() string {
				var tok struct {
					AccessToken string `json:"access_token"`
				}
				if st := apiDo(t, "GET", p.url+"/v1/credentials/"+name+"/token", key, nil, &tok); st != 200 {
					return ""
				}
				if !idp.ValidAccessToken(tok.AccessToken) {
					t.Errorf("%s: the broker served a token the provider does not accept", name)
				}
				return "ok"
			})
		}
	}
	checkAll(p)
	for round := range 5 {
		time.Sleep(time.Duration(500+rand.IntN(2000)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.cmd.Wait()
		p = startProc(t, bin, args...)
		if p.key != "" {
			t.Fatalf("round %d: a restart printed a new admin key", round)
		}
		checkAll(p)
	}
	// Let the restarted broker run a few refresh cycles, then stop it cleanly.
	time.Sleep(4 * time.Second)
	checkAll(p)
	var list struct {
		Credentials []struct {
			Name, Status string
		} `json:"credentials"`
	}
	apiDo(t, "GET", p.url+"/v1/credentials", key, nil, &list)
	for _, c := range list.Credentials {
		if c.Status != "active" {
			t.Errorf("%s is %s after the kills", c.Name, c.Status)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("serve exited with %v after SIGTERM", err)
	}
	st := idp.Stats()
	t.Logf("kill test: %d credentials, 5 SIGKILLs, %d refreshes at the provider, %d refreshes cut between the provider's answer and the commit (grace reuses), %d reuse detections",
		n, st.TokenRequests["refresh_token"], st.GraceReuses, st.ReuseDetections)
	if st.ReuseDetections != 0 {
		t.Errorf("%d reuse detections outside the grace period", st.ReuseDetections)
	}
}
