package tracing_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/tracing"
)

// TestExportsSpans: spans of a token read, a refresh attempt with its
// provider call and a webhook delivery reach an OTLP/HTTP receiver (on
// loopback) when the tracer shuts down; their protobuf bodies name the
// spans and carry no secret.
func TestExportsSpans(t *testing.T) {
	var mu sync.Mutex
	var bodies []byte
	var paths []string
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b...)
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(400) }))
	defer provider.Close()

	ctx := context.Background()
	tr, err := tracing.New(ctx, collector.URL, "test")
	if err != nil {
		t.Fatal(err)
	}
	_, end := tr.TokenRead(ctx, "payments")
	end(tokenkeeper.Errorf(tokenkeeper.ENOTREADY, "not ready"))
	c := &tokenkeeper.Credential{Name: "payments", GrantType: tokenkeeper.GrantRefreshToken, RefreshToken: "SECRET-refresh"}
	actx, done := tr.RefreshAttempt(ctx, c)
	req, _ := http.NewRequestWithContext(actx, "POST", provider.URL+"/token?x=SECRET-query", nil)
	if resp, err := tr.WrapClient(&http.Client{Timeout: 5 * time.Second}).Do(req); err == nil {
		resp.Body.Close()
	}
	done(&tokenkeeper.Event{Outcome: "needs_reauth", ErrorCode: "invalid_grant"})
	code, err := tr.WebhookDelivery(ctx, &tokenkeeper.WebhookDelivery{EventType: "credential.needs_reauth", EndpointID: "wh_1"},
		func(context.Context) (int, error) { return 0, errors.New("refused") })
	if code != 0 || err == nil {
		t.Fatal("WebhookDelivery did not pass send's result through")
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) == 0 || paths[0] != "/v1/traces" {
		t.Fatalf("the collector got %v", paths)
	}
	for _, want := range []string{"token read", "refresh attempt", "HTTP POST", "webhook delivery", "invalid_grant", "payments"} {
		if !containsBytes(bodies, want) {
			t.Errorf("the exported spans do not mention %q", want)
		}
	}
	for _, secret := range []string{"SECRET-refresh", "SECRET-query"} {
		if containsBytes(bodies, secret) {
			t.Errorf("a secret was exported: %s", secret)
		}
	}
}

func containsBytes(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return true
		}
	}
	return false
}

func TestNilTracerDoesNothing(t *testing.T) {
	var tr *tracing.Tracer
	ctx := context.Background()
	if c, end := tr.TokenRead(ctx, "x"); c != ctx || end == nil {
		t.Fatal("nil TokenRead")
	} else {
		end(nil)
	}
	if c, done := tr.RefreshAttempt(ctx, &tokenkeeper.Credential{}); c != ctx || done != nil {
		t.Fatal("nil RefreshAttempt")
	}
	hc := &http.Client{}
	if tr.WrapClient(hc) != hc || tr.Shutdown(ctx) != nil {
		t.Fatal("nil WrapClient/Shutdown")
	}
}
