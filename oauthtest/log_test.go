package oauthtest

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLogsHoldNoSecrets drives every grant, success and failure, and checks
// that the log has one line per token request with its grant, client,
// outcome and error code, and no token, code, verifier or secret.
func TestLogsHoldNoSecrets(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clock := newFakeClock()
	const secret, otherSecret = "client-secret-VALUE-1", "client-secret-VALUE-2"
	s := NewServer(WithClient("c", secret), WithClient("d", otherSecret), WithRotation(true),
		WithReuseDetection(10*time.Second), WithLogger(logger), WithNow(clock.Now))
	defer s.Close()
	secrets := []string{secret, otherSecret, testVerifier}

	// client_credentials, good and bad; a secret mistyped as a client id.
	secrets = append(secrets, clientCredentials(t, s, "c", secret))
	postForm(t, s.TokenURL(), url.Values{"grant_type": {"client_credentials"}}, &basicCreds{"c", "wrong-secret-VALUE"})
	postForm(t, s.TokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {secret + "X"}, "client_secret": {secret}}, nil)
	secrets = append(secrets, "wrong-secret-VALUE")

	// Refresh, grace reuse, reuse detection.
	rt1 := s.IssueRefreshToken("c", "")
	r := mustRefresh(t, s, "c", secret, rt1)
	rt2 := r.str("refresh_token")
	secrets = append(secrets, rt1, rt2, r.str("access_token"))
	r = mustRefresh(t, s, "c", secret, rt1) // within grace
	secrets = append(secrets, r.str("refresh_token"), r.str("access_token"))
	clock.Advance(time.Minute)
	refresh(t, s, "c", secret, rt1) // reuse detected

	// Authorization code with PKCE, and its reuse.
	code := authorizeCode(t, s, "c", "", s256(testVerifier))
	r = exchange(t, s, "c", secret, code, testRedirect, testVerifier)
	secrets = append(secrets, code, r.str("access_token"), r.str("refresh_token"))
	exchange(t, s, "c", secret, code, testRedirect, testVerifier)

	// Revocation, faults, unsupported grants.
	revoke(t, s, "c", secret, r.str("access_token"))
	s.Script(Fault{Kind: FaultServerError, Status: 503}, Fault{Kind: FaultFormEncoded})
	refresh(t, s, "d", otherSecret, "ort_whatever")
	fr := postForm(t, s.TokenURL(), url.Values{"grant_type": {"client_credentials"}}, &basicCreds{"d", otherSecret})
	v, _ := url.ParseQuery(fr.raw)
	secrets = append(secrets, v.Get("access_token"))
	postForm(t, s.TokenURL(), url.Values{"grant_type": {"password"}, "password": {"hunter2-VALUE"}}, &basicCreds{"d", otherSecret})
	secrets = append(secrets, "hunter2-VALUE")

	logs := buf.String()
	for _, sec := range secrets {
		if sec == "" {
			t.Fatalf("a secret to look for is empty")
		}
		if strings.Contains(logs, sec) {
			t.Errorf("log contains a secret %q", sec[:min(8, len(sec))])
		}
	}

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "oauthtest: token request" {
			lines = append(lines, m)
		}
	}
	total := 0
	for _, n := range s.Stats().TokenRequests {
		total += n
	}
	if len(lines) != total {
		t.Errorf("%d token request log lines for %d requests", len(lines), total)
	}
	find := func(pred func(map[string]any) bool) map[string]any {
		for _, l := range lines {
			if pred(l) {
				return l
			}
		}
		return nil
	}
	for name, want := range map[string]map[string]any{
		"issued":         {"grant_type": "client_credentials", "client_id": "c", "outcome": "issued", "level": "INFO"},
		"bad secret":     {"grant_type": "client_credentials", "client_id": "c", "outcome": "rejected", "error": "invalid_client"},
		"unknown client": {"grant_type": "client_credentials", "client_id": "", "outcome": "rejected", "error": "invalid_client"},
		"grace":          {"grant_type": "refresh_token", "event": "grace_reuse", "outcome": "issued"},
		"reuse":          {"grant_type": "refresh_token", "event": "reuse_detected", "error": "invalid_grant", "level": "WARN"},
		"code":           {"grant_type": "authorization_code", "event": "family_started", "outcome": "issued"},
		"code reuse":     {"grant_type": "authorization_code", "event": "code_reuse", "error": "invalid_grant", "level": "WARN"},
		"fault":          {"grant_type": "refresh_token", "client_id": "", "outcome": "fault", "fault": "server_error"},
		"form fault":     {"grant_type": "client_credentials", "client_id": "d", "outcome": "issued", "fault": "form_encoded"},
		"unsupported":    {"grant_type": "password", "error": "unsupported_grant_type"},
	} {
		if find(func(l map[string]any) bool {
			for k, v := range want {
				if l[k] != v {
					return false
				}
			}
			return true
		}) == nil {
			t.Errorf("%s: no log line with %v", name, want)
		}
	}
}
