package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// TestWebhookSurvivesSIGKILL: the real binary is SIGKILLed right after a
// status change committed (the forced refresh that turned the credential
// needs_reauth has answered) while the webhook receiver is down. After a
// restart, once the receiver is up, the event is delivered exactly once.
func TestWebhookSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: builds the binary and restarts it (about 10 s)")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	secret := "kill-wh-secret-" + randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("app", secret))
	defer idp.Close()
	rc := newHookReceiver(t)
	rc.setDown(true)
	args := []string{"--database", filepath.Join(dir, "tk.db"), "--webhook-allow-private", "--webhook-retry-min", "200ms"}

	p := startProc(t, bin, args...)
	key := p.key
	var ep struct{ ID, Secret string }
	if st := apiDo(t, "POST", p.url+"/v1/webhooks", key, map[string]any{"url": rc.srv.URL, "events": []string{"credential.needs_reauth"}}, &ep); st != http.StatusCreated {
		t.Fatalf("add webhook: %d", st)
	}
	rc.setSecret(ep.Secret)
	rt := idp.IssueRefreshToken("app", "read")
	if st := apiDo(t, "POST", p.url+"/v1/credentials", key, map[string]any{
		"name": "victim", "token_url": idp.TokenURL(), "grant_type": "refresh_token",
		"client_id": "app", "client_secret": secret, "refresh_token": rt,
	}, nil); st != http.StatusCreated {
		t.Fatalf("create: %d", st)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	waitFor(t, "a first token", 10*time.Second, func() string {
		if apiDo(t, "GET", p.url+"/v1/credentials/victim/token", key, nil, &tok) == 200 {
			return "ok"
		}
		return ""
	})
	idp.RevokeToken(rt)
	// The forced refresh answers after its result (needs_reauth) committed,
	// and with it the outbox row; kill at once.
	apiDo(t, "POST", p.url+"/v1/credentials/victim/refresh", key, map[string]any{"rejected_token": tok.AccessToken}, nil)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	if total, _, _ := rc.stats(); total != 0 {
		t.Fatalf("delivered %d before the kill while the receiver was down", total)
	}

	p = startProc(t, bin, args...)
	defer func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		_ = p.cmd.Wait()
	}()
	var c struct{ Status string }
	apiDo(t, "GET", p.url+"/v1/credentials/victim", key, nil, &c)
	if c.Status != "needs_reauth" {
		t.Fatalf("after the restart the credential is %q", c.Status)
	}
	time.Sleep(300 * time.Millisecond)
	rc.setDown(false)
	waitFor(t, "the delivery after the restart", 20*time.Second, func() string {
		if rc.count("credential.needs_reauth") == 1 {
			return "ok"
		}
		return ""
	})
	time.Sleep(time.Second) // room for a duplicate
	if total, distinct, bad := rc.stats(); total != 1 || distinct != 1 || bad != 0 {
		t.Fatalf("received %d deliveries (%d distinct, %d unverified), want exactly 1", total, distinct, bad)
	}
	t.Logf("delivered once after SIGKILL and restart")
}

// TestWebhookReplicasDeliverOnce: three replicas on PostgreSQL, 100
// credentials turning needs_reauth at once: each event is delivered once,
// exactly 100 deliveries at the receiver.
func TestWebhookReplicasDeliverOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: three replicas on PostgreSQL and 100 credentials (about 15 s)")
	}
	env := pgEnv(t)
	var out syncBuffer
	if err := run(context.Background(), []string{"tokenkeeper", "init", "--json"}, func(k string) string { return env[k] },
		strings.NewReader(""), &out, io.Discard); err != nil {
		t.Fatalf("init: %v", err)
	}
	var init struct {
		Key string `json:"admin_api_key"`
	}
	if err := json.Unmarshal([]byte(out.String()), &init); err != nil || init.Key == "" {
		t.Fatalf("init printed no admin key: %s", out.String())
	}
	key := init.Key
	secret := "replica-wh-secret-" + randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(3*time.Second), oauthtest.WithClient("app", secret))
	defer idp.Close()
	rc := newHookReceiver(t)
	var brokers []*servedBroker
	for range 3 {
		brokers = append(brokers, startServe(t, env, "--webhook-allow-private", "--webhook-retry-min", "200ms"))
	}
	var ep struct{ ID, Secret string }
	if st := apiDo(t, "POST", brokers[0].url+"/v1/webhooks", key, map[string]any{"url": rc.srv.URL, "events": []string{"credential.needs_reauth"}}, &ep); st != http.StatusCreated {
		t.Fatalf("add webhook: %d", st)
	}
	rc.setSecret(ep.Secret)
	const n = 100
	for i := range n {
		if st := apiDo(t, "POST", brokers[i%3].url+"/v1/credentials", key, map[string]any{
			"name": fmt.Sprintf("r%03d", i), "token_url": idp.TokenURL(), "grant_type": "refresh_token",
			"client_id": "app", "client_secret": secret, "refresh_token": idp.IssueRefreshToken("app", "read"),
		}, nil); st != http.StatusCreated {
			t.Fatalf("create: %d", st)
		}
	}
	for i := range n {
		waitFor(t, "a first token", 15*time.Second, func() string {
			if apiDo(t, "GET", brokers[i%3].url+fmt.Sprintf("/v1/credentials/r%03d/token", i), key, nil, nil) == 200 {
				return "ok"
			}
			return ""
		})
	}
	// The provider revokes every grant: the replicas' next scheduled
	// refreshes (3 s tokens) are refused, each credential's by whichever
	// replica claims it.
	idp.RevokeAll()
	deadline := time.Now().Add(60 * time.Second)
	for _, d, _ := rc.stats(); d < n; _, d, _ = rc.stats() {
		if time.Now().After(deadline) {
			var list struct {
				Credentials []struct{ Status string } `json:"credentials"`
			}
			apiDo(t, "GET", brokers[0].url+"/v1/credentials", key, nil, &list)
			st := map[string]int{}
			for _, c := range list.Credentials {
				st[c.Status]++
			}
			t.Fatalf("after 60 s: %d distinct deliveries; credentials by status %v", d, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // room for duplicates
	total, distinct, bad := rc.stats()
	seen := map[string]int{}
	rc.mu.Lock()
	for _, b := range rc.bodies {
		var p struct {
			Data struct {
				Credential string `json:"credential"`
			} `json:"data"`
		}
		_ = json.Unmarshal([]byte(b), &p)
		seen[p.Data.Credential]++
	}
	rc.mu.Unlock()
	t.Logf("3 replicas, %d credentials turned needs_reauth: %d deliveries received (%d distinct ids, %d unverified), %d distinct credentials",
		n, total, distinct, bad, len(seen))
	if total != n || distinct != n || bad != 0 || len(seen) != n {
		t.Fatalf("want exactly %d deliveries, one per credential", n)
	}
	for name, k := range seen {
		if k != 1 {
			t.Fatalf("%s delivered %d times", name, k)
		}
	}
}
