package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
	"github.com/tokenkeeper/tokenkeeper/internal/webhook"
)

// verify checks a request the way the Standard Webhooks specification
// tells receivers to, written from the specification: all three headers,
// a timestamp within five minutes, and one of the space-separated "v1,"
// signatures equal (in constant time) to the base64 HMAC-SHA256, keyed
// with the base64-decoded secret after "whsec_", of id "." timestamp "."
// raw body.
func verify(secret string, h http.Header, body []byte, now time.Time) bool {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || now.Sub(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "." + string(body)))
	want := m.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		v, b64, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

// TestSignSpecVector: the test vector the specification publishes.
func TestSignSpecVector(t *testing.T) {
	got, err := webhook.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if err != nil || got != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Fatalf("Sign = %q, %v", got, err)
	}
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,bm9wZQ== "+got)
	if !verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", h, []byte(`{"test": 2432232314}`), time.Unix(1614265330, 0)) {
		t.Fatal("the test verifier refuses the specification's vector")
	}
	if verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", h, []byte(`{"test": 2432232315}`), time.Unix(1614265330, 0)) {
		t.Fatal("the test verifier accepts a changed body")
	}
	if _, err := webhook.Sign("not-a-secret", "m", 1, nil); err == nil {
		t.Fatal("Sign accepted a secret without whsec_")
	}
}

func TestCheckURL(t *testing.T) {
	for _, u := range []string{
		"http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/hook", "http://127.0.0.1:9/x", "http://[::1]/x",
		"http://localhost/x", "http://localhost./x", "http://192.168.1.1/", "http://100.64.0.1/", "http://[fd00:ec2::254]/",
	} {
		if err := webhook.CheckURL(u, false); tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID || strings.Contains(err.Error(), u) {
			t.Errorf("CheckURL(%s) = %v", u, err)
		}
		if err := webhook.CheckURL(u, true); err != nil {
			t.Errorf("CheckURL(%s, allowPrivate) = %v", u, err)
		}
	}
	for _, u := range []string{"ftp://x.example/", "hooks.example/x", "", "http:///x"} {
		if tokenkeeper.ErrorCode(webhook.CheckURL(u, true)) != tokenkeeper.EINVALID {
			t.Errorf("CheckURL(%q) accepted", u)
		}
	}
	if err := webhook.CheckURL("https://hooks.example/in?token=abc", false); err != nil {
		t.Fatal(err)
	}
}

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tk.db"), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// receiver is an endpoint on loopback that records what it receives.
type receiver struct {
	mu     sync.Mutex
	bodies []string
	ok     []bool // signature verified
	fail   atomic.Int32
	srv    *httptest.Server
	secret string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(body))
		r.ok = append(r.ok, verify(r.secret, req.Header, body, time.Now()))
		r.mu.Unlock()
		if r.fail.Load() > 0 {
			r.fail.Add(-1)
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() ([]string, []bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...), append([]bool(nil), r.ok...)
}

func addEndpoint(t *testing.T, db tokenkeeper.WebhookStore, url string, events ...string) *tokenkeeper.WebhookEndpoint {
	t.Helper()
	ep := &tokenkeeper.WebhookEndpoint{URL: url, Events: events, Secret: sqlstore.NewWebhookSecret()}
	if err := db.CreateWebhookEndpoint(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
	return ep
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDeliverSignedWithRetries: a delivery the endpoint first refuses is
// retried after a backoff and then delivered once, signed.
func TestDeliverSignedWithRetries(t *testing.T) {
	db := openStore(t)
	rc := newReceiver(t)
	ep := addEndpoint(t, db, rc.srv.URL+"/in", tokenkeeper.WebhookCredentialDeleted)
	rc.secret = ep.Secret
	rc.fail.Store(2)
	var mu sync.Mutex
	outcomes := map[string]int{}
	d, err := webhook.New(webhook.Config{Store: db, Owner: "t", AllowPrivate: true, Poll: 10 * time.Millisecond,
		BaseBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		OnAttempt: func(_, outcome string, _ time.Duration) { mu.Lock(); outcomes[outcome]++; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	del, err := db.EnqueueWebhookTest(ctx, ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery", func() bool {
		ds, _ := db.WebhookDeliveries(ctx, ep.ID, 10)
		return len(ds) == 1 && ds[0].Status == tokenkeeper.DeliveryDelivered
	})
	bodies, ok := rc.got()
	if len(bodies) != 3 || !ok[0] || !ok[1] || !ok[2] || bodies[2] != string(del.Payload) {
		t.Fatalf("received %d (%v): %v", len(bodies), ok, bodies)
	}
	ds, _ := db.WebhookDeliveries(ctx, ep.ID, 10)
	if ds[0].Attempts != 3 || ds[0].LastStatusCode != 204 {
		t.Fatalf("log: %+v", ds[0])
	}
	// OnAttempt runs after the attempt is logged in the store: wait for it.
	waitFor(t, "the delivered attempt reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return outcomes[webhook.OutcomeDelivered] > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if outcomes[webhook.OutcomeRetry] != 2 || outcomes[webhook.OutcomeDelivered] != 1 {
		t.Fatalf("outcomes %v", outcomes)
	}
}

// TestGiveUpAfterMaxAge: past the retry window a delivery fails for good.
func TestGiveUpAfterMaxAge(t *testing.T) {
	db := openStore(t)
	rc := newReceiver(t)
	ep := addEndpoint(t, db, rc.srv.URL, tokenkeeper.WebhookCredentialDeleted)
	rc.secret = ep.Secret
	rc.fail.Store(1000)
	d, _ := webhook.New(webhook.Config{Store: db, Owner: "t", AllowPrivate: true, Poll: 10 * time.Millisecond,
		BaseBackoff: 30 * time.Millisecond, MaxBackoff: 30 * time.Millisecond, MaxAge: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if _, err := db.EnqueueWebhookTest(ctx, ep.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "failure", func() bool {
		ds, _ := db.WebhookDeliveries(ctx, ep.ID, 10)
		return len(ds) == 1 && ds[0].Status == tokenkeeper.DeliveryFailed
	})
	ds, _ := db.WebhookDeliveries(ctx, ep.ID, 10)
	if ds[0].Attempts < 2 || ds[0].LastError != "HTTP 503" {
		t.Fatalf("failed delivery: %+v", ds[0])
	}
}

// TestRefusedAtDeliveryTime: a host name that resolves to loopback is
// refused when dialled, unless private targets are allowed; nothing
// reaches the receiver and no redirect is followed.
func TestRefusedAtDeliveryTime(t *testing.T) {
	db := openStore(t)
	rc := newReceiver(t)
	_, port, _ := strings.Cut(strings.TrimPrefix(rc.srv.URL, "http://"), ":")
	// hooks.example passes the registration check (a name, not a literal
	// address); at delivery it resolves to loopback, through a resolver
	// that asks no DNS server.
	u := "http://hooks.example:" + port + "/in"
	if err := webhook.CheckURL(u, false); err != nil {
		t.Fatal(err)
	}
	ep := addEndpoint(t, db, u, tokenkeeper.WebhookCredentialDeleted)
	rc.secret = ep.Secret
	var lookups atomic.Int32
	resolve := func(_ context.Context, host string) (string, error) {
		if host != "hooks.example" {
			return "", errors.New("unexpected lookup of " + host)
		}
		lookups.Add(1)
		return "127.0.0.1", nil
	}
	d, _ := webhook.New(webhook.Config{Store: db, Owner: "t", Poll: 10 * time.Millisecond, Resolve: resolve})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if _, err := db.EnqueueWebhookTest(ctx, ep.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a refused attempt", func() bool {
		ds, _ := db.WebhookDeliveries(ctx, ep.ID, 10)
		return len(ds) == 1 && ds[0].Attempts == 1
	})
	ds, _ := db.WebhookDeliveries(ctx, ep.ID, 10)
	if ds[0].Status != tokenkeeper.DeliveryPending || !strings.Contains(ds[0].LastError, "loopback, private") || strings.Contains(ds[0].LastError, port) {
		t.Fatalf("refused delivery: %+v", ds[0])
	}
	if b, _ := rc.got(); len(b) != 0 || lookups.Load() == 0 {
		t.Fatalf("the receiver got %d requests (%d lookups)", len(b), lookups.Load())
	}
	// With private targets allowed, the same name is delivered to.
	cancel()
	<-done
	d2, _ := webhook.New(webhook.Config{Store: db, Owner: "t2", Poll: 10 * time.Millisecond, Resolve: resolve, AllowPrivate: true,
		BaseBackoff: time.Millisecond})
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	if _, err := db.EnqueueWebhookTest(ctx2, ep.ID); err != nil {
		t.Fatal(err)
	}
	go d2.Run(ctx2)
	waitFor(t, "delivery with private targets allowed", func() bool { b, _ := rc.got(); return len(b) > 0 })
}

// TestNoRedirects: a 3xx answer is not followed and counts as a failure.
func TestNoRedirects(t *testing.T) {
	db := openStore(t)
	var followed atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed.Add(1) }))
	defer target.Close()
	redir := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer redir.Close()
	ep := addEndpoint(t, db, redir.URL, tokenkeeper.WebhookCredentialDeleted)
	d, _ := webhook.New(webhook.Config{Store: db, Owner: "t", AllowPrivate: true, Poll: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if _, err := db.EnqueueWebhookTest(ctx, ep.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an attempt", func() bool {
		ds, _ := db.WebhookDeliveries(ctx, ep.ID, 10)
		return len(ds) == 1 && ds[0].Attempts == 1
	})
	ds, _ := db.WebhookDeliveries(ctx, ep.ID, 10)
	if ds[0].Status != tokenkeeper.DeliveryPending || ds[0].LastStatusCode != http.StatusTemporaryRedirect || followed.Load() != 0 {
		t.Fatalf("redirect: %+v, followed %d", ds[0], followed.Load())
	}
}

// TestDeliveryLogRetention: an endpoint's log keeps the newest finished
// deliveries (the store's retention), never a pending one.
func TestDeliveryLogRetention(t *testing.T) {
	db := openStore(t)
	db.WebhookLogRetention = 2
	rc := newReceiver(t)
	ep := addEndpoint(t, db, rc.srv.URL, tokenkeeper.WebhookCredentialDeleted)
	rc.secret = ep.Secret
	ctx := context.Background()
	var last *tokenkeeper.WebhookDelivery
	for range 4 {
		d, err := db.EnqueueWebhookTest(ctx, ep.ID)
		if err != nil {
			t.Fatal(err)
		}
		last = d
	}
	d, _ := webhook.New(webhook.Config{Store: db, Owner: "t", AllowPrivate: true, Poll: 10 * time.Millisecond})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(rctx); close(done) }()
	waitFor(t, "four deliveries", func() bool { b, _ := rc.got(); return len(b) == 4 })
	cancel()
	<-done
	ds, err := db.WebhookDeliveries(ctx, ep.ID, 10)
	if err != nil || len(ds) != 2 || ds[0].ID != last.ID || ds[0].Status != tokenkeeper.DeliveryDelivered {
		t.Fatalf("log after 4 deliveries with retention 2: %d %v", len(ds), err)
	}
}
