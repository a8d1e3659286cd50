package main

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

var (
	linkRE     = regexp.MustCompile(`(http://127\.0\.0\.1:\d+/connect/[A-Za-z0-9_-]{43,})`)
	userCodeRE = regexp.MustCompile(`enter the code\s+([A-Z0-9-]+)`)
)

// TestCLIConnect: tokenkeeper connect prints a link, waits, and reports the
// credential connected; with --device it prints the user code and exits
// non-zero naming access_denied when the user denies; a return_to off the
// broker's list is refused before anything starts.
func TestCLIConnect(t *testing.T) {
	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("app", "app-secret"),
		oauthtest.WithDeviceInterval(time.Second))
	defer idp.Close()
	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"), "--connect-return-to", "https://app.example/done")
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key, "TOKENKEEPER_CLIENT_SECRET": "app-secret"}
	cli := func(ctx context.Context, out *syncBuffer, args ...string) error {
		var errb syncBuffer
		err := run(ctx, append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(""), out, &errb)
		if err != nil {
			t.Logf("stderr: %s", errb.String())
		}
		return err
	}
	var out syncBuffer
	if err := cli(context.Background(), &out, "provider", "add", "idp", "--token-url", idp.TokenURL(), "--authorization-url", idp.AuthorizeURL(),
		"--device-authorization-url", idp.DeviceAuthorizationURL(), "--client-id", "app", "--scopes", "read"); err != nil {
		t.Fatalf("provider add: %v %s", err, out.String())
	}

	// The authorization code flow: the test is the browser.
	out = syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- cli(context.Background(), &out, "connect", "idp", "--name", "gh", "--poll", "100ms") }()
	link := waitFor(t, "the link", 10*time.Second, func() string {
		if m := linkRE.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		return ""
	})
	resp, err := http.Get(link) // follows the provider's redirect to the callback
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("open the link: %v %v", resp, err)
	}
	resp.Body.Close()
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), `Connected: credential "gh" of provider "idp" is active.`) {
			t.Fatalf("connect: %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("connect did not return")
	}

	// The device flow, denied.
	out = syncBuffer{}
	go func() {
		done <- cli(context.Background(), &out, "connect", "idp", "--name", "tv", "--device", "--poll", "100ms")
	}()
	code := waitFor(t, "the user code", 10*time.Second, func() string {
		if m := userCodeRE.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		return ""
	})
	if !strings.Contains(out.String(), idp.VerificationURL()) {
		t.Fatalf("device output: %s", out.String())
	}
	if err := idp.DenyDevice(code); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, errConnectFailed) || !strings.Contains(err.Error(), "access_denied") {
			t.Fatalf("denied device: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("connect --device did not return")
	}

	// return_to off the list: refused at once.
	out = syncBuffer{}
	err = cli(context.Background(), &out, "connect", "idp", "--name", "x", "--return-to", "https://evil.example/")
	if err == nil || !strings.Contains(err.Error(), "allow-list") {
		t.Fatalf("return_to off the list: %v", err)
	}
	if strings.Contains(sb.stderr.String()+sb.stdout.String(), "app-secret") {
		t.Fatal("the client secret reached the broker's log")
	}
}
