package storetest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// webhookTests are the conformance tests of tokenkeeper.WebhookStore; they
// are skipped for a store that does not implement it.
var webhookTests = []struct {
	name string
	fn   func(e *env)
}{
	{"WebhookEndpoints", testWebhookEndpoints},
	{"WebhookEndpointInvalid", testWebhookEndpointInvalid},
	{"WebhookOutbox", func(e *env) { testWebhookOutbox(e, false) }},
	{"WebhookOutboxClaimed", func(e *env) { testWebhookOutbox(e, true) }},
	{"WebhookOutboxFencedWritesNothing", testWebhookOutboxFenced},
	{"WebhookOrderPerCredential", testWebhookOrder},
	{"WebhookLeaseAndFencing", testWebhookLease},
	{"WebhookClaimTwoStores", testWebhookClaimTwoStores},
	{"WebhookRotateKey", testWebhookRotateKey},
}

func (e *env) wh() tokenkeeper.WebhookStore {
	e.t.Helper()
	ws, ok := e.s.(tokenkeeper.WebhookStore)
	if !ok {
		e.t.Skip("the store does not implement tokenkeeper.WebhookStore")
	}
	return ws
}

func whSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

func (e *env) endpoint(events ...string) *tokenkeeper.WebhookEndpoint {
	e.t.Helper()
	ep := &tokenkeeper.WebhookEndpoint{URL: "https://hooks.example/in", Events: events, Secret: whSecret()}
	if err := e.wh().CreateWebhookEndpoint(e.ctx, ep); err != nil {
		e.t.Fatalf("CreateWebhookEndpoint: %v", err)
	}
	return ep
}

// deliveries returns the endpoint's delivery log, oldest first.
func (e *env) deliveries(ep *tokenkeeper.WebhookEndpoint) []*tokenkeeper.WebhookDelivery {
	e.t.Helper()
	ds, err := e.wh().WebhookDeliveries(e.ctx, ep.ID, 1000)
	if err != nil {
		e.t.Fatalf("WebhookDeliveries: %v", err)
	}
	for i, j := 0, len(ds)-1; i < j; i, j = i+1, j-1 {
		ds[i], ds[j] = ds[j], ds[i]
	}
	return ds
}

func types(ds []*tokenkeeper.WebhookDelivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.EventType)
	}
	return out
}

// commit claims c and commits a refresh result with status and failures,
// as the refresher does: saying what it claimed (RefreshResult.Claimed).
func (e *env) commit(c *tokenkeeper.Credential, status tokenkeeper.Status, failures int) {
	e.t.Helper()
	e.commitSaying(c, status, failures, true)
}

// commitSaying is commit, which says what it claimed only if claimed is
// set: then the store takes the state the commit replaces from the claim,
// and otherwise reads it.
func (e *env) commitSaying(c *tokenkeeper.Credential, status tokenkeeper.Status, failures int, claimed bool) {
	e.t.Helper()
	cl := e.claim(c.ID, "w")
	r := &tokenkeeper.RefreshResult{Status: status, FailureCount: failures, LastErrorCode: "invalid_grant"}
	if claimed {
		r.Claimed = cl
	}
	if status == tokenkeeper.StatusActive {
		r.Token = &tokenkeeper.Token{AccessToken: secret("at"), ExpiresAt: e.clock.Now().Add(time.Hour)}
		r.LastErrorCode = ""
	}
	if _, err := e.s.CompleteRefresh(e.ctx, c.ID, "w", cl.Version, r); err != nil {
		e.t.Fatalf("CompleteRefresh: %v", err)
	}
}

func testWebhookEndpoints(e *env) {
	t, ws := e.t, e.wh()
	a := e.endpoint(tokenkeeper.WebhookCredentialNeedsReauth)
	e.clock.Add(time.Second) // listed oldest first
	b := e.endpoint(tokenkeeper.WebhookCredentialDeleted, tokenkeeper.WebhookCredentialRecovered)
	if a.ID == "" || a.ID == b.ID || !a.CreatedAt.Equal(start.Truncate(time.Microsecond)) {
		t.Fatalf("created: %+v %+v", a, b)
	}
	got, err := ws.WebhookEndpoint(e.ctx, b.ID)
	if err != nil || asJSON(got) != asJSON(b) {
		t.Fatalf("WebhookEndpoint = %s, %v; want %s", asJSON(got), err, asJSON(b))
	}
	list, err := ws.WebhookEndpoints(e.ctx)
	if err != nil || len(list) != 2 || asJSON(list[0]) != asJSON(a) || asJSON(list[1]) != asJSON(b) {
		t.Fatalf("WebhookEndpoints = %s, %v", asJSON(list), err)
	}
	// The signing secret is sealed at rest.
	if dump := e.RawDump(t); bytes.Contains(dump, []byte(a.Secret)) || bytes.Contains(dump, []byte(a.Secret[len("whsec_"):])) {
		t.Fatal("a webhook secret is stored in plain text")
	}
	if _, err := ws.EnqueueWebhookTest(e.ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := ws.DeleteWebhookEndpoint(e.ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	wantCode(t, ws.DeleteWebhookEndpoint(e.ctx, b.ID), tokenkeeper.ENOTFOUND)
	_, err = ws.WebhookEndpoint(e.ctx, b.ID)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	_, err = ws.WebhookDeliveries(e.ctx, b.ID, 10)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	_, err = ws.EnqueueWebhookTest(e.ctx, b.ID)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	// Its deliveries went with it: nothing is left to claim.
	ds, err := ws.ClaimWebhookDeliveries(e.ctx, "w", start.Add(time.Hour), time.Minute, 10)
	if err != nil || len(ds) != 0 {
		t.Fatalf("claim after delete: %d, %v", len(ds), err)
	}
}

func testWebhookEndpointInvalid(e *env) {
	t, ws := e.t, e.wh()
	for _, ep := range []*tokenkeeper.WebhookEndpoint{
		{URL: "", Events: []string{tokenkeeper.WebhookCredentialDeleted}, Secret: whSecret()},
		{URL: "ftp://x.example/", Events: []string{tokenkeeper.WebhookCredentialDeleted}, Secret: whSecret()},
		{URL: "https://user:pw@x.example/", Events: []string{tokenkeeper.WebhookCredentialDeleted}, Secret: whSecret()},
		{URL: "/relative", Events: []string{tokenkeeper.WebhookCredentialDeleted}, Secret: whSecret()},
		{URL: "https://x.example/", Events: nil, Secret: whSecret()},
		{URL: "https://x.example/", Events: []string{"credential.nope"}, Secret: whSecret()},
		{URL: "https://x.example/", Events: []string{tokenkeeper.WebhookTest}, Secret: whSecret()},
		{URL: "https://x.example/", Events: []string{tokenkeeper.WebhookCredentialDeleted, tokenkeeper.WebhookCredentialDeleted}, Secret: whSecret()},
		{URL: "https://x.example/", Events: []string{tokenkeeper.WebhookCredentialDeleted}, Secret: "short"},
	} {
		wantCode(t, ws.CreateWebhookEndpoint(e.ctx, ep), tokenkeeper.EINVALID)
	}
	wantCode(t, ws.CreateWebhookEndpoint(e.ctx, nil), tokenkeeper.EINVALID)
	if list, err := ws.WebhookEndpoints(e.ctx); err != nil || len(list) != 0 {
		t.Fatalf("invalid endpoints were stored: %d, %v", len(list), err)
	}
	_, err := ws.ClaimWebhookDeliveries(e.ctx, "", start, time.Minute, 1)
	wantCode(t, err, tokenkeeper.EINVALID)
	_, err = ws.ClaimWebhookDeliveries(e.ctx, "w", start, time.Minute, 0)
	wantCode(t, err, tokenkeeper.EINVALID)
	wantCode(t, ws.CompleteWebhookDelivery(e.ctx, 1, "w", 1, tokenkeeper.WebhookAttempt{Status: "bogus"}), tokenkeeper.EINVALID)
	wantCode(t, ws.CompleteWebhookDelivery(e.ctx, 1, "w", 1, tokenkeeper.WebhookAttempt{Status: tokenkeeper.DeliveryPending}), tokenkeeper.EINVALID)
	wantCode(t, ws.CompleteWebhookDelivery(e.ctx, 12345, "w", 1, tokenkeeper.WebhookAttempt{Status: tokenkeeper.DeliveryDelivered}), tokenkeeper.ENOTFOUND)
}

// testWebhookOutbox: each status change writes one delivery per subscribed
// endpoint, in the change's transaction, with a payload free of secrets;
// the same whether the commits say what they claimed or not.
func testWebhookOutbox(e *env, claimed bool) {
	t := e.t
	commit := func(c *tokenkeeper.Credential, status tokenkeeper.Status, failures int) {
		t.Helper()
		e.commitSaying(c, status, failures, claimed)
	}
	all := e.endpoint(tokenkeeper.WebhookCredentialNeedsReauth, tokenkeeper.WebhookCredentialError,
		tokenkeeper.WebhookCredentialRecovered, tokenkeeper.WebhookCredentialDeleted)
	delOnly := e.endpoint(tokenkeeper.WebhookCredentialDeleted)
	c := e.create(newCred("hooked"))
	commit(c, tokenkeeper.StatusActive, 0) // active → active: nothing
	commit(c, tokenkeeper.StatusNeedsReauth, 0)
	commit(c, tokenkeeper.StatusNeedsReauth, 0) // a forced refresh refused again: no second event
	rt := secret("new-refresh-token")
	if _, err := e.s.UpdateCredential(e.ctx, c.Name, tokenkeeper.CredentialUpdate{RefreshToken: &rt}, nil); err != nil {
		t.Fatal(err)
	}
	// Temporary failures: credential.error once the third in a row commits.
	commit(c, tokenkeeper.StatusError, 1)
	commit(c, tokenkeeper.StatusError, 2)
	if got := types(e.deliveries(all)); len(got) != 2 {
		t.Fatalf("after two failures: %v", got)
	}
	commit(c, tokenkeeper.StatusError, 3)
	commit(c, tokenkeeper.StatusError, 4)
	commit(c, tokenkeeper.StatusActive, 0)
	if err := e.s.DeleteCredential(e.ctx, c.Name); err != nil {
		t.Fatal(err)
	}
	want := []string{tokenkeeper.WebhookCredentialNeedsReauth, tokenkeeper.WebhookCredentialRecovered,
		tokenkeeper.WebhookCredentialError, tokenkeeper.WebhookCredentialRecovered, tokenkeeper.WebhookCredentialDeleted}
	ds := e.deliveries(all)
	if got := types(ds); asJSON(got) != asJSON(want) {
		t.Fatalf("deliveries %v, want %v", got, want)
	}
	if got := types(e.deliveries(delOnly)); len(got) != 1 || got[0] != tokenkeeper.WebhookCredentialDeleted {
		t.Fatalf("deleted-only endpoint got %v", got)
	}
	seen := map[string]bool{}
	for _, d := range ds {
		if d.Status != tokenkeeper.DeliveryPending || d.EndpointID != all.ID || d.CredentialID != c.ID || d.MessageID == "" || seen[d.MessageID] {
			t.Fatalf("delivery: %+v", d)
		}
		seen[d.MessageID] = true
		var p struct {
			Type      string            `json:"type"`
			Timestamp time.Time         `json:"timestamp"`
			Data      map[string]string `json:"data"`
		}
		if err := json.Unmarshal(d.Payload, &p); err != nil {
			t.Fatalf("payload %s: %v", d.Payload, err)
		}
		if p.Type != d.EventType || p.Data["credential"] != "hooked" || p.Timestamp.IsZero() {
			t.Fatalf("payload %s", d.Payload)
		}
		for _, s := range []string{c.ClientSecret, c.RefreshToken, rt} {
			if bytes.Contains(d.Payload, []byte(s)) {
				t.Fatalf("payload holds a secret: %s", d.Payload)
			}
		}
	}
	var first map[string]any
	json.Unmarshal(ds[0].Payload, &first)
	if d := first["data"].(map[string]any); d["status"] != "needs_reauth" || d["last_error_code"] != "invalid_grant" {
		t.Fatalf("needs_reauth payload: %s", ds[0].Payload)
	}
}

func testWebhookOutboxFenced(e *env) {
	t := e.t
	ep := e.endpoint(tokenkeeper.WebhookCredentialNeedsReauth)
	c := e.create(newCred("fenced"))
	cl := e.claim(c.ID, "w")
	_, err := e.s.CompleteRefresh(e.ctx, c.ID, "w", cl.Version-1, &tokenkeeper.RefreshResult{Status: tokenkeeper.StatusNeedsReauth})
	wantCode(t, err, tokenkeeper.ECONFLICT)
	if ds := e.deliveries(ep); len(ds) != 0 {
		t.Fatalf("a fenced commit wrote %v", types(ds))
	}
}

// testWebhookOrder: a credential's later delivery is not claimed while an
// earlier one to the same endpoint is pending; other credentials go on.
func testWebhookOrder(e *env) {
	t, ws := e.t, e.wh()
	e.endpoint(tokenkeeper.WebhookCredentialNeedsReauth, tokenkeeper.WebhookCredentialRecovered)
	a := e.create(newCred("a"))
	b := e.create(newCred("b"))
	e.commit(a, tokenkeeper.StatusNeedsReauth, 0)
	rt := secret("rt")
	if _, err := e.s.UpdateCredential(e.ctx, a.Name, tokenkeeper.CredentialUpdate{RefreshToken: &rt}, nil); err != nil {
		t.Fatal(err)
	}
	e.commit(b, tokenkeeper.StatusNeedsReauth, 0)
	now := e.clock.Now()
	got, err := ws.ClaimWebhookDeliveries(e.ctx, "w", now, time.Minute, 10)
	if err != nil || len(got) != 2 || got[0].CredentialID != a.ID || got[0].EventType != tokenkeeper.WebhookCredentialNeedsReauth || got[1].CredentialID != b.ID {
		t.Fatalf("first claim: %v %v", types(got), err)
	}
	// A failed attempt keeps a's first delivery pending: its second waits.
	if err := ws.CompleteWebhookDelivery(e.ctx, got[0].ID, "w", got[0].Version, tokenkeeper.WebhookAttempt{
		Status: tokenkeeper.DeliveryPending, StatusCode: 503, Error: "503 Service Unavailable", NextAttemptAt: now.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if more, err := ws.ClaimWebhookDeliveries(e.ctx, "w2", now.Add(500*time.Millisecond), time.Minute, 10); err != nil || len(more) != 0 {
		t.Fatalf("claimed %v while the earlier delivery waits", types(more))
	}
	retry, err := ws.ClaimWebhookDeliveries(e.ctx, "w2", now.Add(time.Second), time.Minute, 10)
	if err != nil || len(retry) != 1 || retry[0].ID != got[0].ID || retry[0].Attempts != 1 || retry[0].LastStatusCode != 503 {
		t.Fatalf("retry claim: %+v %v", retry, err)
	}
	if err := ws.CompleteWebhookDelivery(e.ctx, retry[0].ID, "w2", retry[0].Version, tokenkeeper.WebhookAttempt{Status: tokenkeeper.DeliveryDelivered, StatusCode: 204}); err != nil {
		t.Fatal(err)
	}
	next, err := ws.ClaimWebhookDeliveries(e.ctx, "w2", now.Add(time.Second), time.Minute, 10)
	if err != nil || len(next) != 1 || next[0].EventType != tokenkeeper.WebhookCredentialRecovered || next[0].CredentialID != a.ID {
		t.Fatalf("after delivery: %v %v", types(next), err)
	}
	// A delivery given up (failed) no longer holds the queue.
	if err := ws.CompleteWebhookDelivery(e.ctx, next[0].ID, "w2", next[0].Version, tokenkeeper.WebhookAttempt{Status: tokenkeeper.DeliveryFailed, Error: "gave up"}); err != nil {
		t.Fatal(err)
	}
	log, err := ws.WebhookDeliveries(e.ctx, got[0].EndpointID, 10)
	if err != nil || len(log) != 3 {
		t.Fatalf("log: %d %v", len(log), err)
	}
	byID := map[int64]*tokenkeeper.WebhookDelivery{}
	for _, d := range log {
		byID[d.ID] = d
	}
	if d := byID[got[0].ID]; d.Status != tokenkeeper.DeliveryDelivered || d.Attempts != 2 || d.LastStatusCode != 204 || d.FinishedAt.IsZero() {
		t.Fatalf("delivered: %+v", d)
	}
	if d := byID[next[0].ID]; d.Status != tokenkeeper.DeliveryFailed || d.LastError != "gave up" {
		t.Fatalf("failed: %+v", d)
	}
}

func testWebhookLease(e *env) {
	t, ws := e.t, e.wh()
	ep := e.endpoint(tokenkeeper.WebhookCredentialDeleted)
	d, err := ws.EnqueueWebhookTest(e.ctx, ep.ID)
	if err != nil || d.EventType != tokenkeeper.WebhookTest || d.Status != tokenkeeper.DeliveryPending {
		t.Fatalf("test delivery: %+v %v", d, err)
	}
	now := e.clock.Now()
	first, err := ws.ClaimWebhookDeliveries(e.ctx, "w1", now, 30*time.Second, 5)
	if err != nil || len(first) != 1 || first[0].LeaseOwner != "w1" {
		t.Fatalf("claim: %+v %v", first, err)
	}
	if got, _ := ws.ClaimWebhookDeliveries(e.ctx, "w2", now.Add(29*time.Second), 30*time.Second, 5); len(got) != 0 {
		t.Fatal("claimed within another's lease")
	}
	second, err := ws.ClaimWebhookDeliveries(e.ctx, "w2", now.Add(30*time.Second), 30*time.Second, 5)
	if err != nil || len(second) != 1 || second[0].Version != first[0].Version+1 {
		t.Fatalf("claim after the lease: %+v %v", second, err)
	}
	wantCode(t, ws.CompleteWebhookDelivery(e.ctx, d.ID, "w1", first[0].Version, tokenkeeper.WebhookAttempt{Status: tokenkeeper.DeliveryDelivered}), tokenkeeper.ECONFLICT)
	if err := ws.CompleteWebhookDelivery(e.ctx, d.ID, "w2", second[0].Version, tokenkeeper.WebhookAttempt{Status: tokenkeeper.DeliveryDelivered, StatusCode: 200}); err != nil {
		t.Fatal(err)
	}
	if got, _ := ws.ClaimWebhookDeliveries(e.ctx, "w3", now.Add(time.Hour), time.Minute, 5); len(got) != 0 {
		t.Fatal("a delivered delivery was claimed again")
	}
}

// testWebhookClaimTwoStores: two stores on one database, claiming at once,
// get disjoint deliveries that cover all of them.
func testWebhookClaimTwoStores(e *env) {
	t := e.t
	peer, ok := e.OpenPeer(t).(tokenkeeper.WebhookStore)
	if !ok {
		t.Skip("peer is not a WebhookStore")
	}
	ep := e.endpoint(tokenkeeper.WebhookCredentialDeleted)
	const n = 40
	for i := 0; i < n; i++ {
		if _, err := e.wh().EnqueueWebhookTest(e.ctx, ep.ID); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for i, ws := range []tokenkeeper.WebhookStore{e.wh(), peer, e.wh(), peer} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ds, err := ws.ClaimWebhookDeliveries(e.ctx, "w"+string(rune('a'+i)), start, time.Minute, 3)
				if err != nil {
					t.Error(err)
					return
				}
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				for _, d := range ds {
					seen[d.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("claimed %d distinct deliveries, want %d", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Fatalf("delivery %d claimed %d times", id, k)
		}
	}
}

func testWebhookRotateKey(e *env) {
	t, ws := e.t, e.wh()
	ep := e.endpoint(tokenkeeper.WebhookCredentialDeleted)
	if _, err := e.s.RotateKey(e.ctx); err != nil {
		t.Fatal(err)
	}
	got, err := ws.WebhookEndpoint(e.ctx, ep.ID)
	if err != nil || got.Secret != ep.Secret {
		t.Fatalf("after rotation: %v", err)
	}
	got, err = e.OpenPeer(t).(tokenkeeper.WebhookStore).WebhookEndpoint(e.ctx, ep.ID)
	if err != nil || got.Secret != ep.Secret {
		t.Fatalf("peer after rotation: %v", err)
	}
}
