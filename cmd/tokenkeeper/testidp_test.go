package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

var issuerRE = regexp.MustCompile(`issuer:\s+(http://[0-9.:]+)`)

// testidp's flow flags reach the server: a consent page, OIDC discovery, a
// public client using the device endpoint.
func TestTestIDPFlowFlags(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"tokenkeeper", "testidp", "--addr", "127.0.0.1:0", "--client", "web:s",
			"--public-client", "cli", "--consent", "--oidc", "--offline-access-required",
			"--device-interval", "0", "--end-user", "u-7:dev@example.com"}, func(string) string { return "" }, nil, &out, &errb)
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("testidp returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("testidp did not stop")
		}
	}()
	iss := waitFor(t, "the issuer line", 10*time.Second, func() string {
		if m := issuerRE.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		return ""
	})
	if !strings.Contains(out.String(), iss+"/device_authorization") || !strings.Contains(out.String(), "openid-configuration") {
		t.Errorf("banner lacks the device and discovery URLs:\n%s", out.String())
	}

	resp, err := http.Get(iss + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var disc map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&disc)
	resp.Body.Close()
	if resp.StatusCode != 200 || disc["issuer"] != iss || disc["jwks_uri"] != iss+"/jwks" {
		t.Errorf("discovery: %d %v", resp.StatusCode, disc)
	}

	q := url.Values{"response_type": {"code"}, "client_id": {"web"}, "redirect_uri": {"http://127.0.0.1:1/cb"}, "scope": {"openid"}}
	resp, err = http.Get(iss + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("--consent: /authorize answered %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	resp, err = http.PostForm(iss+"/device_authorization", url.Values{"client_id": {"cli"}, "scope": {"openid"}})
	if err != nil {
		t.Fatal(err)
	}
	var dev map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&dev)
	resp.Body.Close()
	if resp.StatusCode != 200 || dev["interval"] != float64(0) || dev["verification_uri"] != iss+"/device" {
		t.Errorf("device authorization: %d %v", resp.StatusCode, dev)
	}
}

func TestTestIDPRejectsBadFlowFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--end-user", "no-email"},
		{"--end-user", ":a@example.com"},
		{"--device-interval", "-1s"},
		{"--device-code-lifetime", "0s"},
		{"--public-client", "id:secret"},
	} {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper", "testidp", "--addr", "127.0.0.1:0", "--client", "c:s"}, args...),
			func(string) string { return "" }, nil, &out, &errb)
		if err == nil || strings.Contains(out.String(), "issuer:") {
			t.Errorf("%v: err %v, started:\n%s", args, err, out.String())
		}
	}
}
