package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

func hexDigest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// newSession returns a connect session of provider for credential name,
// with its link token and state.
func newSession(provider, name string) (cs *tokenkeeper.ConnectSession, link, state string) {
	link, state = secret("link-"+name), secret("state-"+name)
	return &tokenkeeper.ConnectSession{
		Kind: tokenkeeper.ConnectAuthorizationCode, Provider: provider, CredentialName: name,
		Scopes: []string{"read"}, LinkHash: hexDigest(link), StateHash: hexDigest(state),
		CodeVerifier: secret("verifier-" + name), RedirectURI: "https://broker.example/connect/callback",
		CreatedBy: "apikey:test", ExpiresAt: start.Add(30 * time.Minute),
	}, link, state
}

func grantFor(name string) *tokenkeeper.Grant {
	return &tokenkeeper.Grant{RefreshToken: secret("connect-refresh-" + name),
		Token:  tokenkeeper.Token{AccessToken: secret("connect-access-" + name), TokenType: "Bearer", ExpiresAt: start.Add(time.Hour)},
		Scopes: []string{"read"}, EndUserEmail: name + "@example.com", EndUserSubject: "sub-" + name}
}

// testConnectSessions: a session's link and state are used once each (of
// two concurrent uses of the state one wins), its secrets are sealed at
// rest, completing stores the grant in a new credential and ends the
// session, and a failure is recorded without touching credentials.
func testConnectSessions(e *env) {
	t := e.t
	e.createProvider(newProvider("cp"))
	cs, link, state := newSession("cp", "conn")
	if err := e.s.CreateConnectSession(e.ctx, cs); err != nil {
		t.Fatal(err)
	}
	if cs.ID == "" || cs.Status != tokenkeeper.ConnectPending || cs.ProviderID == "" {
		t.Fatalf("created: %+v", cs.Status)
	}
	got, err := e.s.ConnectSession(e.ctx, cs.ID)
	if err != nil || got.CodeVerifier != cs.CodeVerifier || got.Provider != "cp" || got.CredentialName != "conn" || asJSON(got.Scopes) != `["read"]` {
		t.Fatalf("read back: %v", err)
	}
	checkNoSecret(t, "database", e.RawDump(t), []string{cs.CodeVerifier, link, state})

	if _, err := e.s.UseConnectLink(e.ctx, hexDigest(link), e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.UseConnectLink(e.ctx, hexDigest(link), e.clock.Now())
	wantCode(t, err, tokenkeeper.ECONFLICT)
	_, err = e.s.UseConnectLink(e.ctx, hexDigest("nope"), e.clock.Now())
	wantCode(t, err, tokenkeeper.ENOTFOUND)

	// Two uses of the state at once: one gets the session.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.s.UseConnectState(e.ctx, hexDigest(state), e.clock.Now())
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("two uses of the state: %v, %v", errs[0], errs[1])
	}
	for _, err := range errs {
		if err != nil {
			wantCode(t, err, tokenkeeper.ECONFLICT)
		}
	}

	g := grantFor("conn")
	c, err := e.s.CompleteConnectSession(e.ctx, cs.ID, g)
	if err != nil {
		t.Fatal(err)
	}
	stored := e.get("conn")
	if c.Name != "conn" || stored.RefreshToken != g.RefreshToken || stored.Token.AccessToken != g.Token.AccessToken ||
		stored.Status != tokenkeeper.StatusActive || stored.EndUserID != "sub-conn" || stored.EndUserEmail != "conn@example.com" || stored.Provider != "cp" {
		t.Fatalf("credential: %+v", stored.Status)
	}
	_, err = e.s.CompleteConnectSession(e.ctx, cs.ID, grantFor("again"))
	wantCode(t, err, tokenkeeper.ECONFLICT)
	got, _ = e.s.ConnectSession(e.ctx, cs.ID)
	if got.Status != tokenkeeper.ConnectConnected || got.CredentialID != c.ID || got.CodeVerifier != "" {
		t.Fatalf("session after completion: %s", got.Status)
	}
	checkNoSecret(t, "database", e.RawDump(t), []string{g.RefreshToken, g.Token.AccessToken})
	evs, err := e.s.ConnectEvents(e.ctx, cs.ID)
	if err != nil || len(evs) != 4 || evs[3].Kind != "connected" {
		t.Fatalf("session events: %s, %v", asJSON(evs), err)
	}
	// A new session for an existing name is refused unless it reconnects.
	dup, _, _ := newSession("cp", "conn")
	wantCode(t, e.s.CreateConnectSession(e.ctx, dup), tokenkeeper.ECONFLICT)

	// A failure ends the session; a second one changes nothing.
	f, _, _ := newSession("cp", "fails")
	if err := e.s.CreateConnectSession(e.ctx, f); err != nil {
		t.Fatal(err)
	}
	if err := e.s.FailConnectSession(e.ctx, f.ID, "access_denied", "denied"); err != nil {
		t.Fatal(err)
	}
	if err := e.s.FailConnectSession(e.ctx, f.ID, "other", "later"); err != nil {
		t.Fatal(err)
	}
	got, _ = e.s.ConnectSession(e.ctx, f.ID)
	if got.Status != tokenkeeper.ConnectFailed || got.Reason != "access_denied" {
		t.Fatalf("failed session: %s %s", got.Status, got.Reason)
	}
	_, err = e.s.CompleteConnectSession(e.ctx, f.ID, grantFor("fails"))
	wantCode(t, err, tokenkeeper.ECONFLICT)
	_, err = e.s.Credential(e.ctx, "fails")
	wantCode(t, err, tokenkeeper.ENOTFOUND)

	// An expired link is refused and ends its session.
	x, xlink, _ := newSession("cp", "late")
	if err := e.s.CreateConnectSession(e.ctx, x); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.UseConnectLink(e.ctx, hexDigest(xlink), start.Add(31*time.Minute))
	wantCode(t, err, tokenkeeper.EEXPIRED)
	if got, _ := e.s.ConnectSession(e.ctx, x.ID); got.Status != tokenkeeper.ConnectFailed || got.Reason != "expired" {
		t.Fatalf("expired session: %s %s", got.Status, got.Reason)
	}

	// A pending session keeps its provider; ended ones go with it.
	p, _, _ := newSession("cp", "waiting")
	if err := e.s.CreateConnectSession(e.ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := e.s.DeleteCredential(e.ctx, "conn"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.s.DeleteProvider(e.ctx, "cp"), tokenkeeper.ECONFLICT)
	if err := e.s.FailConnectSession(e.ctx, p.ID, "cancelled", "test"); err != nil {
		t.Fatal(err)
	}
	if err := e.s.DeleteProvider(e.ctx, "cp"); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.ConnectSession(e.ctx, p.ID)
	wantCode(t, err, tokenkeeper.ENOTFOUND)
}

// testConnectReconnect: completing a reconnect session replaces the
// credential's grant in place: same id, name and events, status active,
// fencing version moved; a failed one records an event on the credential.
func testConnectReconnect(e *env) {
	t := e.t
	e.createProvider(newProvider("rp"))
	rc := ofProvider("rc", "rp")
	rc.EndUserID = "caller-id-7"
	c := e.create(rc)
	reauth := tokenkeeper.StatusNeedsReauth
	if _, err := e.s.UpdateCredential(e.ctx, "rc", tokenkeeper.CredentialUpdate{Status: &reauth}, nil); err != nil {
		t.Fatal(err)
	}
	before := e.get("rc")
	oldEvents := e.events("rc")
	cs, _, _ := newSession("rp", "rc")
	cs.Reconnect = true
	if err := e.s.CreateConnectSession(e.ctx, cs); err != nil {
		t.Fatal(err)
	}
	g := grantFor("rc")
	got, err := e.s.CompleteConnectSession(e.ctx, cs.ID, g)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != c.ID || got.Name != "rc" || got.Status != tokenkeeper.StatusActive || got.RefreshToken != g.RefreshToken ||
		got.Token.AccessToken != g.Token.AccessToken || got.Version <= before.Version ||
		got.EndUserID != "caller-id-7" || got.EndUserEmail != "rc@example.com" {
		t.Fatalf("after the reconnect: %+v", got.Status)
	}
	if evs := e.events("rc"); len(evs) != len(oldEvents)+1 || evs[0].Kind != "connected" {
		t.Fatalf("events: %s", asJSON(evs))
	}
	// A reconnect of a credential of another provider is refused.
	e.createProvider(newProvider("other-rp"))
	bad, _, _ := newSession("other-rp", "rc")
	bad.Reconnect = true
	wantCode(t, e.s.CreateConnectSession(e.ctx, bad), tokenkeeper.EINVALID)
	// A failed reconnect is an event of the credential.
	f, _, _ := newSession("rp", "rc")
	f.Reconnect = true
	if err := e.s.CreateConnectSession(e.ctx, f); err != nil {
		t.Fatal(err)
	}
	if err := e.s.FailConnectSession(e.ctx, f.ID, "access_denied", "denied at the provider"); err != nil {
		t.Fatal(err)
	}
	if evs := e.events("rc"); evs[0].Kind != "connect_failed" || evs[0].ErrorCode != "access_denied" {
		t.Fatalf("events after a failed reconnect: %s", asJSON(evs))
	}
}

// testDeviceSessions: device sessions keep the device code sealed and are
// listed while pending and unexpired.
func testDeviceSessions(e *env) {
	t := e.t
	e.createProvider(newProvider("dp"))
	dc := secret("device-code")
	cs := &tokenkeeper.ConnectSession{Kind: tokenkeeper.ConnectDevice, Provider: "dp", CredentialName: "dev",
		DeviceCode: dc, UserCode: "ABCD-EFGH", VerificationURI: "https://provider.example/device", Interval: 5 * time.Second,
		ExpiresAt: start.Add(10 * time.Minute)}
	if err := e.s.CreateConnectSession(e.ctx, cs); err != nil {
		t.Fatal(err)
	}
	checkNoSecret(t, "database", e.RawDump(t), []string{dc})
	list, err := e.s.PendingDeviceSessions(e.ctx, start)
	if err != nil || len(list) != 1 || list[0].DeviceCode != dc || list[0].Interval != 5*time.Second || list[0].UserCode != "ABCD-EFGH" {
		t.Fatalf("pending device sessions: %d, %v", len(list), err)
	}
	if list, _ := e.s.PendingDeviceSessions(e.ctx, start.Add(11*time.Minute)); len(list) != 0 {
		t.Fatal("an expired device session is listed")
	}
	// Poll leases: one owner at a time; another after it lapses.
	lease := func(owner string, until, now time.Time) bool {
		t.Helper()
		ok, err := e.s.LeaseDevicePoll(e.ctx, cs.ID, owner, until, now)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !lease("a", start.Add(time.Minute), start) || lease("b", start.Add(time.Minute), start.Add(time.Second)) ||
		!lease("a", start.Add(2*time.Minute), start.Add(time.Second)) {
		t.Fatal("a lease is not held by one owner at a time")
	}
	if !lease("b", start.Add(4*time.Minute), start.Add(3*time.Minute)) || lease("a", start.Add(5*time.Minute), start.Add(3*time.Minute)) {
		t.Fatal("a lapsed lease does not pass to another owner")
	}
	if err := e.s.FailConnectSession(e.ctx, cs.ID, "cancelled", "test"); err != nil {
		t.Fatal(err)
	}
	if lease("b", start.Add(6*time.Minute), start.Add(3*time.Minute)) {
		t.Fatal("an ended session was leased")
	}
	noCode := *cs
	noCode.DeviceCode = ""
	wantCode(t, e.s.CreateConnectSession(e.ctx, &noCode), tokenkeeper.EINVALID)
}

// testConnectExtras: the fields a profile keeps with a grant are stored
// with the credential (unsealed, identifiers only), replaced by a
// reconnect that brings new ones and kept by one that brings none; a
// secret-looking name or a control character is refused; a provider's
// issuer is kept.
func testConnectExtras(e *env) {
	t := e.t
	p := newProvider("xp")
	p.Issuer = "https://login.example.com/tenant"
	e.createProvider(p)
	if got, err := e.s.Provider(e.ctx, "xp"); err != nil || got.Issuer != p.Issuer {
		t.Fatalf("issuer: %s, %v", asJSON(got), err)
	}
	bad := newProvider("xp-bad")
	bad.Issuer = "not a url"
	wantCode(t, e.s.CreateProvider(e.ctx, bad), tokenkeeper.EINVALID)

	cs, _, _ := newSession("xp", "xc")
	if err := e.s.CreateConnectSession(e.ctx, cs); err != nil {
		t.Fatal(err)
	}
	g := grantFor("xc")
	g.Extras = map[string]string{"instance_url": "https://acme.my.salesforce.com", "realmId": "4620816365", "team.id": "T1"}
	if _, err := e.s.CompleteConnectSession(e.ctx, cs.ID, g); err != nil {
		t.Fatal(err)
	}
	got := e.get("xc")
	if len(got.Extras) != 3 || got.Extras["realmId"] != "4620816365" || got.Extras["team.id"] != "T1" {
		t.Fatalf("extras: %v", got.Extras)
	}
	if !strings.Contains(string(e.RawDump(t)), "4620816365") {
		t.Error("extras are identifiers: they are stored unsealed")
	}
	// A reconnect without extras keeps them; one with extras replaces them.
	for i, extras := range []map[string]string{nil, {"realmId": "999"}} {
		rs, _, _ := newSession("xp", "xc")
		rs.Reconnect = true
		if err := e.s.CreateConnectSession(e.ctx, rs); err != nil {
			t.Fatal(err)
		}
		g := grantFor("xc")
		g.Extras = extras
		if _, err := e.s.CompleteConnectSession(e.ctx, rs.ID, g); err != nil {
			t.Fatal(err)
		}
		got := e.get("xc")
		if (i == 0 && len(got.Extras) != 3) || (i == 1 && (len(got.Extras) != 1 || got.Extras["realmId"] != "999")) {
			t.Fatalf("reconnect %d: extras %v", i, got.Extras)
		}
	}
	for _, extras := range []map[string]string{{"refresh_token": "x"}, {"id": "a\nb"}, {"a b": "x"}} {
		ns, _, _ := newSession("xp", "xc-"+strings.Repeat("b", len(extras)))
		if err := e.s.CreateConnectSession(e.ctx, ns); err != nil {
			t.Fatal(err)
		}
		g := grantFor("bad")
		g.Extras = extras
		_, err := e.s.CompleteConnectSession(e.ctx, ns.ID, g)
		wantCode(t, err, tokenkeeper.EINVALID)
		if err := e.s.FailConnectSession(e.ctx, ns.ID, "cancelled", "test"); err != nil {
			t.Fatal(err)
		}
	}
}
