package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// verifyStandardWebhook checks a delivery as the Standard Webhooks
// specification tells receivers to (written here from the specification,
// not with the broker's code): the three headers, a timestamp within five
// minutes, and a space-separated "v1,<base64>" signature equal, in constant
// time, to HMAC-SHA256 keyed with the base64-decoded part of the "whsec_"
// secret over "id.timestamp.body".
func verifyStandardWebhook(secret string, h http.Header, body []byte) bool {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" || !strings.HasPrefix(secret, "whsec_") {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	key, err := base64.StdEncoding.DecodeString(secret[len("whsec_"):])
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Split(sigs, " ") {
		if v, b64, ok := strings.Cut(s, ","); ok && v == "v1" {
			if got, err := base64.StdEncoding.DecodeString(b64); err == nil && hmac.Equal(got, want) {
				return true
			}
		}
	}
	return false
}

// hookReceiver is a webhook endpoint on loopback that counts verified
// deliveries by message id and event type. It can be down (503s).
type hookReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	secret string         // guarded by mu
	down   bool           // guarded by mu
	byID   map[string]int // guarded by mu: verified deliveries per webhook-id
	types  map[string]int // guarded by mu: first deliveries per event type
	bodies []string       // guarded by mu
	bad    int            // guarded by mu: deliveries whose signature did not verify
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{byID: map[string]int{}, types: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if !verifyStandardWebhook(h.secret, r.Header, body) {
		h.bad++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	id := r.Header.Get("webhook-id")
	h.byID[id]++
	if h.byID[id] == 1 {
		var p struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(body, &p)
		h.types[p.Type]++
	}
	h.bodies = append(h.bodies, string(body))
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) setSecret(s string) { h.mu.Lock(); h.secret = s; h.mu.Unlock() }
func (h *hookReceiver) setDown(d bool)     { h.mu.Lock(); h.down = d; h.mu.Unlock() }

func (h *hookReceiver) count(eventType string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.types[eventType]
}

// stats returns the deliveries received (retries of one id included), the
// distinct ids, and the deliveries that failed verification.
func (h *hookReceiver) stats() (total, distinct, bad int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.byID {
		total += n
	}
	return total, len(h.byID), h.bad
}

var metricsURLRE = regexp.MustCompile(`metrics listening"? url="?(http://[0-9.:]+/metrics)`)

// scrape returns the text of /metrics.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	return string(b)
}

// metricValue sums the samples of name whose labels contain every one of
// labels ("outcome=\"ok\"").
func metricValue(text, name string, labels ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

// TestWebhooksAndMetricsEndToEnd: a broker started by run with metrics,
// the access log and webhooks; a credential the provider revokes produces
// exactly one credential.needs_reauth, its re-authorization (a new refresh
// token) one credential.recovered, its deletion one credential.deleted,
// each signed as Standard Webhooks say; the metrics move; the access log
// names routes and callers and never a secret.
func TestWebhooksAndMetricsEndToEnd(t *testing.T) {
	secret := "wh-client-secret-" + randomString()
	idp := oauthtest.NewServer(oauthtest.WithLifetime(time.Hour), oauthtest.WithClient("app", secret))
	defer idp.Close()
	rc := newHookReceiver(t)
	// An OTLP/HTTP collector on loopback: the spans arrive when serve stops.
	var traceMu sync.Mutex
	var traces []byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		traceMu.Lock()
		traces = append(traces, b...)
		traceMu.Unlock()
	}))
	defer collector.Close()
	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"), "--metrics-addr", "127.0.0.1:0",
		"--metrics-poll", "100ms", "--webhook-allow-private", "--webhook-retry-min", "100ms", "--access-log",
		"--otlp-endpoint", collector.URL)
	murl := waitFor(t, "the metrics URL", 5*time.Second, func() string {
		if m := metricsURLRE.FindStringSubmatch(sb.stderr.String()); m != nil {
			return m[1]
		}
		return ""
	})

	var ep struct {
		ID, URL, Secret string
		Events          []string
	}
	if st := apiDo(t, "POST", sb.url+"/v1/webhooks", sb.key, map[string]any{"url": rc.srv.URL + "/hook",
		"events": []string{"credential.needs_reauth", "credential.recovered", "credential.deleted"}}, &ep); st != http.StatusCreated {
		t.Fatalf("add webhook: %d", st)
	}
	if !strings.HasPrefix(ep.Secret, "whsec_") || ep.ID == "" || len(ep.Events) != 3 {
		t.Fatalf("webhook: %+v", ep)
	}
	rc.setSecret(ep.Secret)
	var list struct {
		Webhooks []map[string]any `json:"webhooks"`
	}
	apiDo(t, "GET", sb.url+"/v1/webhooks", sb.key, nil, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0]["secret"] != nil {
		t.Fatalf("list shows %v", list.Webhooks)
	}

	rt := idp.IssueRefreshToken("app", "read")
	if st := apiDo(t, "POST", sb.url+"/v1/providers", sb.key, map[string]any{
		"name": "idp", "authorization_url": idp.AuthorizeURL(), "token_url": idp.TokenURL(),
		"client_id": "app", "client_secret": secret,
	}, nil); st != http.StatusCreated {
		t.Fatalf("create the provider: %d", st)
	}
	if st := apiDo(t, "POST", sb.url+"/v1/credentials", sb.key, map[string]any{
		"name": "hooked", "provider": "idp", "grant_type": "refresh_token", "refresh_token": rt,
	}, nil); st != http.StatusCreated {
		t.Fatalf("create: %d", st)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	waitFor(t, "a first token", 10*time.Second, func() string {
		if apiDo(t, "GET", sb.url+"/v1/credentials/hooked/token", sb.key, nil, &tok) == 200 {
			return "ok"
		}
		return ""
	})

	// The provider revokes the grant: the next refresh is refused for good.
	if !idp.RevokeToken(rt) {
		t.Fatal("revoke at the provider")
	}
	// (Reporting the token as rejected passes the forced-refresh floor.)
	apiDo(t, "POST", sb.url+"/v1/credentials/hooked/refresh", sb.key, map[string]any{"rejected_token": tok.AccessToken}, nil)
	waitFor(t, "credential.needs_reauth at the receiver", 10*time.Second, func() string {
		if rc.count("credential.needs_reauth") > 0 {
			return "ok"
		}
		return ""
	})

	// Re-authorized with a new refresh token: recovered.
	rt2 := idp.IssueRefreshToken("app", "read")
	if st := apiDo(t, "PATCH", sb.url+"/v1/credentials/hooked", sb.key, map[string]any{"refresh_token": rt2}, nil); st != 200 {
		t.Fatalf("patch: %d", st)
	}
	waitFor(t, "credential.recovered", 10*time.Second, func() string {
		if rc.count("credential.recovered") > 0 {
			return "ok"
		}
		return ""
	})
	if st := apiDo(t, "DELETE", sb.url+"/v1/credentials/hooked", sb.key, nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d", st)
	}
	waitFor(t, "credential.deleted", 10*time.Second, func() string {
		if rc.count("credential.deleted") > 0 {
			return "ok"
		}
		return ""
	})
	time.Sleep(500 * time.Millisecond) // room for a duplicate to show up
	total, distinct, bad := rc.stats()
	if total != 3 || distinct != 3 || bad != 0 || rc.count("credential.needs_reauth") != 1 || rc.count("credential.recovered") != 1 {
		t.Fatalf("received %d deliveries (%d distinct, %d unverified): %v", total, distinct, bad, rc.bodies)
	}
	rc.mu.Lock()
	for _, b := range rc.bodies {
		for _, s := range []string{secret, rt, rt2, tok.AccessToken, ep.Secret} {
			if strings.Contains(b, s) {
				t.Fatalf("a delivery holds a secret: %s", b)
			}
		}
	}
	var first struct {
		Type string            `json:"type"`
		Data map[string]string `json:"data"`
	}
	json.Unmarshal([]byte(rc.bodies[0]), &first)
	rc.mu.Unlock()
	if first.Type != "credential.needs_reauth" || first.Data["credential"] != "hooked" || first.Data["provider"] != "idp" || first.Data["status"] != "needs_reauth" || first.Data["last_error_code"] != "invalid_grant" {
		t.Fatalf("first delivery: %+v", first)
	}

	// The delivery log, through the API and the CLI.
	var dl struct {
		Deliveries []struct {
			EventType string `json:"event_type"`
			Status    string `json:"status"`
			Attempts  int    `json:"attempts"`
		} `json:"deliveries"`
	}
	apiDo(t, "GET", sb.url+"/v1/webhooks/"+ep.ID+"/deliveries", sb.key, nil, &dl)
	if len(dl.Deliveries) != 3 || dl.Deliveries[0].EventType != "credential.deleted" || dl.Deliveries[2].Status != "delivered" {
		t.Fatalf("delivery log: %+v", dl)
	}
	cli := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
		if err := run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	if out := cli("webhook", "list"); !strings.Contains(out, ep.ID) || strings.Contains(out, ep.Secret) {
		t.Fatalf("webhook list:\n%s", out)
	}
	if out := cli("webhook", "deliveries", ep.ID); strings.Count(out, "delivered") != 3 {
		t.Fatalf("webhook deliveries:\n%s", out)
	}
	if out := cli("webhook", "test", ep.ID); !strings.Contains(out, "Queued test delivery") {
		t.Fatalf("webhook test:\n%s", out)
	}
	waitFor(t, "the test delivery", 10*time.Second, func() string {
		if _, d, _ := rc.stats(); d == 4 {
			return "ok"
		}
		return ""
	})

	// The metrics moved.
	waitFor(t, "metrics", 5*time.Second, func() string {
		m := scrape(t, murl)
		if metricValue(m, "tokenkeeper_webhook_deliveries_total", `event="credential.needs_reauth"`, `outcome="delivered"`) == 1 &&
			metricValue(m, "tokenkeeper_store_up") == 1 {
			return "ok"
		}
		return ""
	})
	m := scrape(t, murl)
	for _, c := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"tokenkeeper_refresh_attempts_total", []string{`outcome="ok"`}, 2},
		{"tokenkeeper_refresh_attempts_total", []string{`outcome="needs_reauth"`, `error_class="invalid_grant"`}, 1},
		{"tokenkeeper_refresh_duration_seconds_count", nil, 3},
		{"tokenkeeper_refresh_attempts_total", []string{`provider="idp"`}, 3},
		{"tokenkeeper_token_reads_total", []string{`outcome="ok"`}, 1},
		{"tokenkeeper_forced_refreshes_total", []string{`reason="rejected_token"`}, 1},
		{"tokenkeeper_leases_claimed_total", nil, 3},
		{"tokenkeeper_webhook_deliveries_total", []string{`outcome="delivered"`}, 4},
		{"tokenkeeper_store_query_duration_seconds_count", []string{`op="ping"`}, 1},
		{"go_goroutines", nil, 1},
	} {
		if v := metricValue(m, c.name, c.labels...); v < c.min {
			t.Errorf("%s%v = %v, want at least %v", c.name, c.labels, v, c.min)
		}
	}
	if strings.Contains(m, "hooked") {
		t.Error("a credential name appears on /metrics without --metrics-per-credential")
	}

	sb.stop(t)
	traceMu.Lock()
	for _, span := range []string{"token read", "refresh attempt", "HTTP POST", "webhook delivery"} {
		if !bytes.Contains(traces, []byte(span)) {
			t.Errorf("no %q span reached the OTLP collector", span)
		}
	}
	for _, s := range []string{secret, rt, rt2, tok.AccessToken, ep.Secret, sb.key} {
		if bytes.Contains(traces, []byte(s)) {
			t.Fatal("a secret was exported in a span")
		}
	}
	traceMu.Unlock()
	logs := sb.stderr.String()
	for _, want := range []string{`route="GET /v1/credentials/{name}/token"`, `route="POST /v1/webhooks"`, "caller_kind=apikey", "request_id="} {
		if !strings.Contains(logs, want) {
			t.Errorf("the access log has no %s", want)
		}
	}
	for _, s := range []string{secret, rt, rt2, tok.AccessToken, ep.Secret, sb.key} {
		if strings.Contains(logs, s) {
			t.Fatal("a secret appears in the logs")
		}
	}
}

// TestWebhookRegistrationRefusesInternalTargets: without
// --webhook-allow-private, metadata and private addresses are refused when
// registered (a parse of the URL: nothing connects), and nothing is stored.
func TestWebhookRegistrationRefusesInternalTargets(t *testing.T) {
	sb := startServeGuarded(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/hook", "http://127.0.0.1:1/x", "http://localhost./x"} {
		var p struct {
			Detail string `json:"detail"`
		}
		start := time.Now()
		if st := apiDo(t, "POST", sb.url+"/v1/webhooks", sb.key, map[string]any{"url": u, "events": []string{"credential.needs_reauth"}}, &p); st != http.StatusBadRequest {
			t.Fatalf("%s: status %d", u, st)
		}
		if !strings.Contains(p.Detail, "--webhook-allow-private") || strings.Contains(p.Detail, u) {
			t.Fatalf("%s: detail %q", u, p.Detail)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("%s: refusal took %s, as if something was dialled", u, d)
		}
	}
	var list struct {
		Webhooks []any `json:"webhooks"`
	}
	apiDo(t, "GET", sb.url+"/v1/webhooks", sb.key, nil, &list)
	if len(list.Webhooks) != 0 {
		t.Fatalf("refused webhooks were stored: %v", list.Webhooks)
	}
}
