package storetest

import (
	"fmt"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// newProvider returns a valid provider with a fresh secret.
func newProvider(name string) *tokenkeeper.Provider {
	return &tokenkeeper.Provider{
		Name:             name,
		AuthorizationURL: "https://provider.example/oauth/authorize",
		TokenURL:         "https://provider.example/oauth/token",
		RevocationURL:    "https://provider.example/oauth/revoke",
		ClientID:         "client-" + name,
		ClientSecret:     secret("provider-secret-" + name),
		AuthStyle:        tokenkeeper.AuthStyleHeader,
		Scopes:           []string{"openid", "email"},
		AuthorizeParams:  map[string]string{"prompt": "consent"},
		TokenParams:      map[string]string{"audience": "https://api.example/"},
	}
}

func (e *env) createProvider(p *tokenkeeper.Provider) *tokenkeeper.Provider {
	e.t.Helper()
	if err := e.s.CreateProvider(e.ctx, p); err != nil {
		e.t.Fatalf("CreateProvider(%s): %v", p.Name, err)
	}
	return p
}

// ofProvider returns a refresh-token credential of the named provider.
func ofProvider(name, provider string) *tokenkeeper.Credential {
	return &tokenkeeper.Credential{Name: name, Provider: provider, GrantType: tokenkeeper.GrantRefreshToken,
		RefreshToken: secret("refresh-" + name)}
}

func testProviderCreateAndRead(e *env) {
	t := e.t
	p := e.createProvider(newProvider("google"))
	if p.ID == "" || p.Version != 1 || p.PKCE != tokenkeeper.PKCES256 || !p.CreatedAt.Equal(start) || !p.UpdatedAt.Equal(start) {
		t.Fatalf("created: %s", asJSON(p))
	}
	got, err := e.s.Provider(e.ctx, "google")
	if err != nil || asJSON(got) != asJSON(p) || got.ClientSecret != p.ClientSecret {
		t.Fatalf("Provider:\n got %s, %v\nwant %s", asJSON(got), err, asJSON(p))
	}
	public := newProvider("public")
	public.ClientSecret, public.PKCE = "", tokenkeeper.PKCENone
	e.createProvider(public)
	all, err := e.s.Providers(e.ctx)
	if err != nil || len(all) != 2 || all[0].Name != "google" || all[1].Name != "public" || all[1].ClientSecret != "" || all[1].PKCE != tokenkeeper.PKCENone {
		t.Fatalf("Providers: %s, %v", asJSON(all), err)
	}
	wantCode(t, e.s.CreateProvider(e.ctx, newProvider("google")), tokenkeeper.ECONFLICT)
	_, err = e.s.Provider(e.ctx, "nope")
	wantCode(t, err, tokenkeeper.ENOTFOUND)

	for name, mutate := range map[string]func(p *tokenkeeper.Provider){
		"bad name":          func(p *tokenkeeper.Provider) { p.Name = "no spaces" },
		"no token url":      func(p *tokenkeeper.Provider) { p.TokenURL = "" },
		"http token url":    func(p *tokenkeeper.Provider) { p.TokenURL = "http://provider.example/token" },
		"bad authorize url": func(p *tokenkeeper.Provider) { p.AuthorizationURL = "ftp://provider.example/a" },
		"bad device url":    func(p *tokenkeeper.Provider) { p.DeviceAuthorizationURL = "not a url" },
		"bad revocation":    func(p *tokenkeeper.Provider) { p.RevocationURL = "https://user:pw@provider.example/r" },
		"no client id":      func(p *tokenkeeper.Provider) { p.ClientID = "" },
		"bad auth style":    func(p *tokenkeeper.Provider) { p.AuthStyle = "guess" },
		"bad pkce":          func(p *tokenkeeper.Provider) { p.PKCE = "plain" },
		"bad scope":         func(p *tokenkeeper.Provider) { p.Scopes = []string{"a b"} },
		"reserved token":    func(p *tokenkeeper.Provider) { p.TokenParams = map[string]string{"refresh_token": "x"} },
		"reserved auth":     func(p *tokenkeeper.Provider) { p.AuthorizeParams = map[string]string{"state": "x"} },
		"long secret":       func(p *tokenkeeper.Provider) { p.ClientSecret = strings.Repeat("s", 5000) },
	} {
		p := newProvider("invalid")
		mutate(p)
		err := e.s.CreateProvider(e.ctx, p)
		wantCode(t, err, tokenkeeper.EINVALID)
		checkErrNoSecret(t, err, []string{p.ClientSecret})
		if name == "" {
			t.Fatal("unreachable")
		}
	}
	if all, _ := e.s.Providers(e.ctx); len(all) != 2 {
		t.Fatalf("invalid providers were stored: %d", len(all))
	}
}

func testCredentialOfProvider(e *env) {
	t := e.t
	p := e.createProvider(newProvider("idp"))
	c := ofProvider("alice", "idp")
	c.EndUserID, c.EndUserName, c.EndUserEmail = "user-1", "Alice", "alice@example.com"
	e.create(c)
	if c.Provider != "idp" || c.ProviderID != p.ID || c.TokenURL != p.TokenURL || c.ClientID != p.ClientID ||
		c.ClientSecret != p.ClientSecret || c.AuthStyle != p.AuthStyle || asJSON(c.TokenParams) != asJSON(p.TokenParams) ||
		asJSON(c.Scopes) != asJSON(p.Scopes) {
		t.Fatalf("credential of a provider: %s", asJSON(c))
	}
	sameCredential(t, e.get("alice"), c)
	if got, err := e.s.CredentialByID(e.ctx, c.ID); err != nil || got.EndUserEmail != "alice@example.com" {
		t.Fatalf("CredentialByID: %v, %v", got, err)
	}
	// Scopes given are the credential's own.
	b := ofProvider("bob", "idp")
	b.Scopes = []string{"email"}
	e.create(b)
	if asJSON(e.get("bob").Scopes) != `["email"]` {
		t.Fatalf("bob's scopes: %v", e.get("bob").Scopes)
	}
	err := e.s.CreateCredential(e.ctx, ofProvider("x", "nope"))
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	both := ofProvider("x", "idp")
	both.TokenURL = "https://elsewhere.example/token"
	wantCode(t, e.s.CreateCredential(e.ctx, both), tokenkeeper.EINVALID)
	public := newProvider("public")
	public.ClientSecret = ""
	e.createProvider(public)
	cc := &tokenkeeper.Credential{Name: "cc", Provider: "public", GrantType: tokenkeeper.GrantClientCredentials}
	wantCode(t, e.s.CreateCredential(e.ctx, cc), tokenkeeper.EINVALID) // client credentials need a secret
	e.create(ofProvider("pub", "public"))                              // a public client's grant does not
	bad := ofProvider("x", "idp")
	bad.EndUserID = "a\nb"
	wantCode(t, e.s.CreateCredential(e.ctx, bad), tokenkeeper.EINVALID)
	if all, _ := e.s.Credentials(e.ctx); len(all) != 3 {
		t.Fatalf("credentials: %d, want 3", len(all))
	}
}

// testInlineProviders: the inline form reuses a provider only when token
// URL, client id, auth style and secret all match; otherwise it creates
// one named after the credential.
func testInlineProviders(e *env) {
	t := e.t
	a := e.create(newCred("a"))
	if a.Provider != "a" || a.ProviderID == "" {
		t.Fatalf("first inline credential: provider %q", a.Provider)
	}
	same := newCred("same")
	same.ClientID, same.ClientSecret = a.ClientID, a.ClientSecret
	e.create(same)
	if same.ProviderID != a.ProviderID {
		t.Fatalf("identical client values did not reuse the provider")
	}
	for name, mutate := range map[string]func(c *tokenkeeper.Credential){
		"secret": func(c *tokenkeeper.Credential) { c.ClientSecret = secret("other") },
		"style":  func(c *tokenkeeper.Credential) { c.AuthStyle = tokenkeeper.AuthStyleBody },
		"url":    func(c *tokenkeeper.Credential) { c.TokenURL = "https://other.example/token" },
		"id":     func(c *tokenkeeper.Credential) { c.ClientID = "another" },
	} {
		c := newCred("diff-" + name)
		c.ClientID, c.ClientSecret = a.ClientID, a.ClientSecret
		mutate(c)
		e.create(c)
		if c.ProviderID == a.ProviderID || c.Provider != c.Name {
			t.Errorf("a different %s reused provider %q", name, c.Provider)
		}
	}
	// A provider name already taken: "<name>-provider".
	e.createProvider(newProvider("taken"))
	c := e.create(newCred("taken"))
	if c.Provider != "taken-provider" {
		t.Fatalf("provider of credential taken = %q", c.Provider)
	}
	c = newCred("taken-provider")
	e.createProvider(newProvider("taken-provider-x"))
	e.create(c)
	if !strings.HasPrefix(c.Provider, "taken-provider-provider") {
		t.Fatalf("provider of credential taken-provider = %q", c.Provider)
	}
}

func testUpdateProvider(e *env) {
	t := e.t
	p := e.createProvider(newProvider("idp"))
	a := e.create(ofProvider("a", "idp"))
	b := e.create(ofProvider("b", "idp"))
	claimed := e.claim(a.ID, "w")

	// Scopes do not fence a refresh.
	e.clock.Add(time.Second)
	got, err := e.s.UpdateProvider(e.ctx, "idp", tokenkeeper.ProviderUpdate{Scopes: ptr([]string{"x"})})
	if err != nil || got.Version != 2 || asJSON(got.Scopes) != `["x"]` || !got.UpdatedAt.Equal(e.clock.Now()) {
		t.Fatalf("UpdateProvider(scopes): %s, %v", asJSON(got), err)
	}
	if e.get("a").Version != claimed.Version {
		t.Fatal("a scope change moved a credential's version")
	}
	// A new secret does: the claimed refresh cannot commit, and the next
	// claim of every credential carries the new secret.
	newSecret := secret("rotated")
	if _, err := e.s.UpdateProvider(e.ctx, "idp", tokenkeeper.ProviderUpdate{ClientSecret: &newSecret}); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.CompleteRefresh(e.ctx, a.ID, "w", claimed.Version, &tokenkeeper.RefreshResult{
		Token: &tokenkeeper.Token{AccessToken: secret("at")}, Status: tokenkeeper.StatusActive})
	wantCode(t, err, tokenkeeper.ECONFLICT)
	for _, c := range []*tokenkeeper.Credential{a, b} {
		got := e.get(c.Name)
		if got.ClientSecret != newSecret || got.Version <= c.Version {
			t.Errorf("%s after the rotation: version %d (was %d)", c.Name, got.Version, c.Version)
		}
	}
	due, err := e.s.ClaimDue(e.ctx, "w2", e.clock.Add(time.Hour), time.Minute, 10)
	if err != nil || len(due) == 0 {
		t.Fatalf("ClaimDue after the rotation: %v, %v", due, err)
	}
	for _, c := range due {
		if c.ClientSecret != newSecret {
			t.Errorf("%s claimed with the old secret", c.Name)
		}
	}
	for _, upd := range []tokenkeeper.ProviderUpdate{
		{TokenURL: ptr("https://moved.example/token")},
		{ClientID: ptr("other")},
		{AuthStyle: ptr(tokenkeeper.AuthStyleBody)},
		{TokenParams: ptr(map[string]string{"resource": "r"})},
	} {
		before := e.get("a").Version
		if _, err := e.s.UpdateProvider(e.ctx, "idp", upd); err != nil {
			t.Fatal(err)
		}
		if e.get("a").Version == before {
			t.Errorf("update %s did not fence the credentials", asJSON(upd))
		}
	}
	final := e.get("a")
	if final.TokenURL != "https://moved.example/token" || final.ClientID != "other" || final.AuthStyle != tokenkeeper.AuthStyleBody || final.TokenParams["resource"] != "r" {
		t.Fatalf("credential after provider updates: %s", asJSON(final))
	}

	// Invalid updates change nothing.
	cur, _ := e.s.Provider(e.ctx, "idp")
	for _, upd := range []tokenkeeper.ProviderUpdate{
		{TokenURL: ptr("http://insecure.example/token")},
		{ClientID: ptr("")},
		{AuthStyle: ptr(tokenkeeper.AuthStyle("x"))},
		{PKCE: ptr("plain")},
		{AuthorizationURL: ptr("nope")},
	} {
		_, err := e.s.UpdateProvider(e.ctx, "idp", upd)
		wantCode(t, err, tokenkeeper.EINVALID)
	}
	if after, _ := e.s.Provider(e.ctx, "idp"); asJSON(after) != asJSON(cur) {
		t.Fatal("an invalid update changed the provider")
	}
	_, err = e.s.UpdateProvider(e.ctx, "nope", tokenkeeper.ProviderUpdate{})
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	_ = p
}

// testProviderSecretReactivates: a new client secret gives the credentials
// refused for a bad client another chance, and leaves the others alone.
func testProviderSecretReactivates(e *env) {
	t := e.t
	e.createProvider(newProvider("idp"))
	for name, code := range map[string]string{"bad-client": "invalid_client", "bad-grant": "invalid_grant"} {
		c := ofProvider(name, "idp")
		c.Status, c.LastErrorCode, c.FailureCount = tokenkeeper.StatusNeedsReauth, code, 1
		c.NextRefreshAt = start.Add(time.Hour)
		e.create(c)
	}
	now := e.clock.Add(time.Second)
	if _, err := e.s.UpdateProvider(e.ctx, "idp", tokenkeeper.ProviderUpdate{ClientSecret: ptr(secret("new"))}); err != nil {
		t.Fatal(err)
	}
	if c := e.get("bad-client"); c.Status != tokenkeeper.StatusActive || c.LastErrorCode != "" || !c.NextRefreshAt.Equal(now) {
		t.Errorf("bad-client after a new secret: %s", asJSON(c))
	}
	if c := e.get("bad-grant"); c.Status != tokenkeeper.StatusNeedsReauth {
		t.Errorf("bad-grant after a new secret: %s", c.Status)
	}
}

func testDeleteProvider(e *env) {
	t := e.t
	e.createProvider(newProvider("idp"))
	e.create(ofProvider("a", "idp"))
	e.create(ofProvider("b", "idp"))
	if n, err := e.s.ProviderCredentialCount(e.ctx, "idp"); err != nil || n != 2 {
		t.Fatalf("ProviderCredentialCount: %d, %v", n, err)
	}
	err := e.s.DeleteProvider(e.ctx, "idp")
	wantCode(t, err, tokenkeeper.ECONFLICT)
	if !strings.Contains(tokenkeeper.ErrorMessage(err), "2 credential") {
		t.Errorf("conflict does not name the count: %v", err)
	}
	for _, n := range []string{"a", "b"} {
		if err := e.s.DeleteCredential(e.ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.s.DeleteProvider(e.ctx, "idp"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, e.s.DeleteProvider(e.ctx, "idp"), tokenkeeper.ENOTFOUND)
	_, err = e.s.ProviderCredentialCount(e.ctx, "idp")
	wantCode(t, err, tokenkeeper.ENOTFOUND)
}

// testUpdateCredentialProviderFields: a credential's client settings are
// its provider's: changed in place when it is the only credential, and
// split off into a provider of its own otherwise.
func testUpdateCredentialProviderFields(e *env) {
	t := e.t
	solo := e.create(newCred("solo"))
	newSecret := secret("solo-new")
	got, err := e.s.UpdateCredential(e.ctx, "solo", tokenkeeper.CredentialUpdate{ClientSecret: &newSecret}, nil)
	if err != nil || got.ProviderID != solo.ProviderID || got.ClientSecret != newSecret {
		t.Fatalf("solo: %s, %v", asJSON(got), err)
	}
	if p, _ := e.s.Provider(e.ctx, solo.Provider); p.ClientSecret != newSecret || p.Version != 2 {
		t.Fatalf("solo's provider was not changed in place: version %d", p.Version)
	}

	e.createProvider(newProvider("shared"))
	a := e.create(ofProvider("a", "shared"))
	b := e.create(ofProvider("b", "shared"))
	moved := "https://moved.example/token"
	got, err = e.s.UpdateCredential(e.ctx, "a", tokenkeeper.CredentialUpdate{TokenURL: &moved}, nil)
	if err != nil || got.ProviderID == a.ProviderID || got.Provider != "a" || got.TokenURL != moved || got.ClientSecret != a.ClientSecret {
		t.Fatalf("a split off: %s, %v", asJSON(got), err)
	}
	sameCredential(t, e.get("b"), b)
	if n, _ := e.s.ProviderCredentialCount(e.ctx, "shared"); n != 1 {
		t.Fatalf("shared has %d credentials, want 1", n)
	}
	// End-user fields.
	got, err = e.s.UpdateCredential(e.ctx, "b", tokenkeeper.CredentialUpdate{EndUserID: ptr("u2"), EndUserEmail: ptr("b@example.com")}, nil)
	if err != nil || got.EndUserID != "u2" || got.EndUserEmail != "b@example.com" || got.Version != b.Version {
		t.Fatalf("end user update: %s, %v", asJSON(got), err)
	}
}

func testFilterCredentials(e *env) {
	t := e.t
	e.createProvider(newProvider("p1"))
	e.createProvider(newProvider("p2"))
	for i, spec := range []struct{ provider, user string }{{"p1", "u1"}, {"p1", "u2"}, {"p2", "u1"}, {"p2", ""}} {
		c := ofProvider(fmt.Sprintf("c%d", i), spec.provider)
		c.EndUserID = spec.user
		if i == 3 {
			c.Status = tokenkeeper.StatusDisabled
		}
		e.create(c)
	}
	for _, tc := range []struct {
		f    tokenkeeper.CredentialFilter
		want string
	}{
		{tokenkeeper.CredentialFilter{}, "c0 c1 c2 c3"},
		{tokenkeeper.CredentialFilter{Provider: "p1"}, "c0 c1"},
		{tokenkeeper.CredentialFilter{Provider: "none"}, ""},
		{tokenkeeper.CredentialFilter{EndUserID: "u1"}, "c0 c2"},
		{tokenkeeper.CredentialFilter{Status: tokenkeeper.StatusDisabled}, "c3"},
		{tokenkeeper.CredentialFilter{Provider: "p2", EndUserID: "u1", Status: tokenkeeper.StatusActive}, "c2"},
	} {
		got, err := e.s.FilterCredentials(e.ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range got {
			if !tc.f.Match(c) {
				t.Errorf("%+v returned %s, which does not match", tc.f, c.Name)
			}
			names = append(names, c.Name)
		}
		if strings.Join(names, " ") != tc.want {
			t.Errorf("FilterCredentials(%+v) = %v, want %s", tc.f, names, tc.want)
		}
	}
	_, err := e.s.FilterCredentials(e.ctx, tokenkeeper.CredentialFilter{Status: "sleeping"})
	wantCode(t, err, tokenkeeper.EINVALID)
}

// testProviderSecretSealedOnce: the secret of a provider is sealed once,
// in its row, whatever number of credentials use it; no plaintext is at
// rest.
func testProviderSecretSealedOnce(e *env) {
	t := e.t
	p := e.createProvider(newProvider("idp"))
	var secrets []string
	secrets = append(secrets, p.ClientSecret)
	for i := 0; i < 20; i++ {
		c := e.create(ofProvider(fmt.Sprintf("c%02d", i), "idp"))
		secrets = append(secrets, c.RefreshToken)
	}
	inline := newCred("inline")
	inline.TokenURL, inline.ClientID, inline.ClientSecret = p.TokenURL, p.ClientID, p.ClientSecret
	e.create(inline)
	if inline.ProviderID != p.ID {
		t.Fatal("inline credential with the provider's values did not reuse it")
	}
	var n int
	if err := e.QueryRow(e.ctx, `SELECT COUNT(*) FROM providers WHERE client_secret IS NOT NULL`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("sealed client secrets: %d, %v; want 1", n, err)
	}
	rotated := secret("rotated")
	secrets = append(secrets, rotated)
	if _, err := e.s.UpdateProvider(e.ctx, "idp", tokenkeeper.ProviderUpdate{ClientSecret: &rotated}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.RotateKey(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.get("c07"); got.ClientSecret != rotated {
		t.Fatal("the rotated secret did not survive a key rotation")
	}
	dump := e.RawDump(t)
	checkNoSecret(t, "raw database dump", dump, secrets)
	if !strings.Contains(string(dump), p.ClientID) {
		t.Fatal("raw dump lacks the provider's client id: the dump does not cover providers")
	}
}

// testReplaceGrantInPlace is what a reconnect does: a credential that
// needs re-authorization gets a new grant (refresh token, access token,
// granted scopes, end user) in place, keeping its id, name and events;
// a refresh claimed before cannot commit.
func testReplaceGrantInPlace(e *env) {
	t := e.t
	e.createProvider(newProvider("idp"))
	c := ofProvider("alice", "idp")
	c.Status, c.LastErrorCode, c.LastError = tokenkeeper.StatusNeedsReauth, "invalid_grant", "revoked"
	e.create(c)
	if err := e.s.AddEvent(e.ctx, &tokenkeeper.Event{CredentialID: c.ID, CredentialName: c.Name, Time: start,
		Kind: tokenkeeper.EventRefresh, Outcome: tokenkeeper.OutcomeNeedsReauth, ErrorCode: "invalid_grant"}); err != nil {
		t.Fatal(err)
	}
	claimed := e.claim(c.ID, "w")
	now := e.clock.Add(time.Second)
	rt, at := secret("new-refresh"), secret("new-access")
	next := now.Add(40 * time.Minute)
	got, err := e.s.UpdateCredential(e.ctx, "alice", tokenkeeper.CredentialUpdate{
		RefreshToken: &rt, Token: &tokenkeeper.Token{AccessToken: at, TokenType: "Bearer", ExpiresAt: now.Add(time.Hour)},
		Scopes: ptr([]string{"email"}), EndUserName: ptr("Alice"), EndUserEmail: ptr("alice@example.com"), NextRefreshAt: &next,
	}, &tokenkeeper.Event{Kind: "connected", Outcome: tokenkeeper.OutcomeOK, Message: "reconnected"})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != c.ID || got.Name != "alice" || got.Status != tokenkeeper.StatusActive || got.RefreshToken != rt ||
		got.Token == nil || got.Token.AccessToken != at || !got.Token.ExpiresAt.Equal(now.Add(time.Hour)) ||
		!got.NextRefreshAt.Equal(next) || got.EndUserEmail != "alice@example.com" || got.LastErrorCode != "" {
		t.Fatalf("after the reconnect: %s", asJSON(got))
	}
	sameCredential(t, e.get("alice"), got)
	if evs := e.events("alice"); len(evs) != 2 || evs[1].ErrorCode != "invalid_grant" {
		t.Fatalf("events after the reconnect: %d", len(evs))
	}
	_, err = e.s.CompleteRefresh(e.ctx, c.ID, "w", claimed.Version, &tokenkeeper.RefreshResult{
		Token: &tokenkeeper.Token{AccessToken: secret("stale")}, Status: tokenkeeper.StatusActive})
	wantCode(t, err, tokenkeeper.ECONFLICT)
	_, err = e.s.UpdateCredential(e.ctx, "alice", tokenkeeper.CredentialUpdate{Token: &tokenkeeper.Token{}}, nil)
	wantCode(t, err, tokenkeeper.EINVALID)
}

// rawProviderParams returns the stored authorize_params and token_params
// of provider id.
func (e *env) rawProviderParams(id string) string {
	e.t.Helper()
	var a, tp string
	if err := e.QueryRow(e.ctx, `SELECT authorize_params, token_params FROM providers WHERE id = $1`, id).Scan(&a, &tp); err != nil {
		e.t.Fatal(err)
	}
	return a + tp
}

// testProviderSecretParamsSealed (L2 for providers): a provider's token and
// authorize params named like secrets are sealed as a credential's are,
// bound to the provider row and to "token_params.<name>" or
// "authorize_params.<name>"; "<sealed>" sent back keeps the value; RotateKey
// re-seals them; a value moved to another provider does not open, and the
// credentials of that provider are then skipped (and named) by
// ReadableCredentials, filtered or not.
func testProviderSecretParamsSealed(e *env) {
	t := e.t
	assertion, hint := secret("provider-assertion"), secret("login-hint-token")
	p := newProvider("sealedp")
	p.TokenParams = map[string]string{"client_assertion": assertion, "audience": "visible-audience"}
	p.AuthorizeParams = map[string]string{"login_hint_token": hint, "prompt": "consent"}
	e.createProvider(p)
	raw := e.rawProviderParams(p.ID)
	checkNoSecret(t, "provider params columns", []byte(raw), []string{assertion, hint})
	if !strings.Contains(raw, "visible-audience") || !strings.Contains(raw, "consent") {
		t.Fatalf("a non-secret provider param was sealed: %s", raw)
	}
	got, err := e.s.Provider(e.ctx, "sealedp")
	if err != nil || got.TokenParams["client_assertion"] != assertion || got.AuthorizeParams["login_hint_token"] != hint {
		t.Fatalf("sealed provider params do not open: %v", err)
	}
	e.create(ofProvider("sp-cred", "sealedp"))
	if c := e.get("sp-cred"); c.TokenParams["client_assertion"] != assertion {
		t.Fatal("a credential does not get its provider's sealed token param")
	}

	// "<sealed>" keeps the stored value; a new value replaces it.
	newAssertion := secret("provider-assertion-2")
	tp := map[string]string{"client_assertion": newAssertion, "audience": "a2"}
	ap := map[string]string{"login_hint_token": tokenkeeper.SealedParamValue}
	got, err = e.s.UpdateProvider(e.ctx, "sealedp", tokenkeeper.ProviderUpdate{TokenParams: &tp, AuthorizeParams: &ap})
	if err != nil {
		t.Fatal(err)
	}
	if got.TokenParams["client_assertion"] != newAssertion || got.AuthorizeParams["login_hint_token"] != hint {
		t.Fatal("provider params after update are wrong")
	}
	checkNoSecret(t, "provider params after update", []byte(e.rawProviderParams(p.ID)), []string{assertion, hint, newAssertion})
	bad := newProvider("sealedq")
	bad.TokenParams = map[string]string{"my_secret": tokenkeeper.SealedParamValue}
	wantCode(t, e.s.CreateProvider(e.ctx, bad), tokenkeeper.EINVALID)

	// RotateKey re-seals them.
	before := e.rawProviderParams(p.ID)
	if _, err := e.s.RotateKey(e.ctx); err != nil {
		t.Fatal(err)
	}
	if e.rawProviderParams(p.ID) == before {
		t.Fatal("RotateKey did not re-seal the provider's secret params")
	}
	got, err = e.s.Provider(e.ctx, "sealedp")
	if err != nil || got.TokenParams["client_assertion"] != newAssertion || got.AuthorizeParams["login_hint_token"] != hint {
		t.Fatalf("provider params after RotateKey: %v", err)
	}

	// A sealed value moved to another provider does not open; its
	// credentials are skipped by the list, which names them.
	other := e.createProvider(newProvider("otherp"))
	e.create(ofProvider("op-cred", "otherp"))
	e.create(ofProvider("op-fine", "sealedp"))
	if err := e.Exec(e.ctx, `UPDATE providers SET token_params = (SELECT token_params FROM providers WHERE id = $1) WHERE id = $2`, p.ID, other.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Provider(e.ctx, "otherp"); err == nil {
		t.Fatal("a sealed provider param moved to another row opened")
	}
	creds, unreadable, err := e.s.ReadableCredentials(e.ctx, tokenkeeper.CredentialFilter{})
	if err != nil || asJSON(names(creds)) != `["op-fine","sp-cred"]` || asJSON(unreadable) != `["op-cred"]` {
		t.Fatalf("ReadableCredentials = %v, unreadable %v, %v", names(creds), unreadable, err)
	}
	creds, unreadable, err = e.s.ReadableCredentials(e.ctx, tokenkeeper.CredentialFilter{Provider: "otherp"})
	if err != nil || len(creds) != 0 || asJSON(unreadable) != `["op-cred"]` {
		t.Fatalf("ReadableCredentials(provider otherp) = %v, unreadable %v, %v", names(creds), unreadable, err)
	}
	creds, unreadable, err = e.s.ReadableCredentials(e.ctx, tokenkeeper.CredentialFilter{Provider: "sealedp"})
	if err != nil || asJSON(names(creds)) != `["op-fine","sp-cred"]` || len(unreadable) != 0 {
		t.Fatalf("ReadableCredentials(provider sealedp) = %v, unreadable %v, %v", names(creds), unreadable, err)
	}
	_, _, err = e.s.ReadableCredentials(e.ctx, tokenkeeper.CredentialFilter{Status: "sleeping"})
	wantCode(t, err, tokenkeeper.EINVALID)
}

// testProviderAPI: the API base URL and token presentation are kept,
// default to Authorization: Bearer, change by update, and are validated.
func testProviderAPI(e *env) {
	t := e.t
	p := e.createProvider(newProvider("plain"))
	if p.APIBaseURL != "" || p.APIToken != tokenkeeper.DefaultAPIToken {
		t.Fatalf("defaults: %q %+v", p.APIBaseURL, p.APIToken)
	}
	api := newProvider("api")
	api.APIBaseURL = "https://api.example/v2"
	api.APIToken = tokenkeeper.APIToken{Header: "X-Api-Key"}
	e.createProvider(api)
	got, err := e.s.Provider(e.ctx, "api")
	if err != nil || got.APIBaseURL != "https://api.example/v2" || got.APIToken != (tokenkeeper.APIToken{Header: "X-Api-Key"}) {
		t.Fatalf("read: %+v, %v", got, err)
	}
	base, q := "https://other.example/", tokenkeeper.APIToken{Query: "access_token"}
	up, err := e.s.UpdateProvider(e.ctx, "api", tokenkeeper.ProviderUpdate{APIBaseURL: &base, APIToken: &q})
	if err != nil || up.APIBaseURL != base || up.APIToken != q {
		t.Fatalf("update: %+v, %v", up, err)
	}
	if got, _ := e.s.Provider(e.ctx, "api"); got.APIBaseURL != base || got.APIToken != q {
		t.Fatalf("after update: %+v", got)
	}
	zero := tokenkeeper.APIToken{}
	if up, err := e.s.UpdateProvider(e.ctx, "api", tokenkeeper.ProviderUpdate{APIToken: &zero}); err != nil || up.APIToken != tokenkeeper.DefaultAPIToken {
		t.Fatalf("back to the default: %+v, %v", up, err)
	}
	for _, bad := range []string{"http://api.example/", "https://api.example/?a=b", "https://u:p@api.example/", "/relative"} {
		_, err := e.s.UpdateProvider(e.ctx, "api", tokenkeeper.ProviderUpdate{APIBaseURL: &bad})
		wantCode(t, err, tokenkeeper.EINVALID)
	}
	badTok := tokenkeeper.APIToken{Header: "Host"}
	_, err = e.s.UpdateProvider(e.ctx, "api", tokenkeeper.ProviderUpdate{APIToken: &badTok})
	wantCode(t, err, tokenkeeper.EINVALID)
	if got, _ := e.s.Provider(e.ctx, "api"); got.APIBaseURL != base {
		t.Fatalf("a refused update changed the provider: %+v", got)
	}
}

// testProviderPreset: a provider's preset and template variables are kept,
// and each of its credentials reads them; they need each other.
func testProviderPreset(e *env) {
	t := e.t
	p := newProvider("ms")
	p.Preset, p.TemplateVars = "microsoft", map[string]string{"tenant": "contoso"}
	e.createProvider(p)
	got, err := e.s.Provider(e.ctx, "ms")
	if err != nil || got.Preset != "microsoft" || got.TemplateVars["tenant"] != "contoso" || len(got.TemplateVars) != 1 {
		t.Fatalf("Provider: %s, %v", asJSON(got), err)
	}
	c := ofProvider("alice", "ms")
	if err := e.s.CreateCredential(e.ctx, c); err != nil {
		t.Fatal(err)
	}
	rc, err := e.s.Credential(e.ctx, "alice")
	if err != nil || rc.Preset != "microsoft" || rc.TemplateVars["tenant"] != "contoso" {
		t.Fatalf("Credential: %s, %v", asJSON(rc), err)
	}
	plain := e.createProvider(newProvider("plain"))
	if got, _ := e.s.Provider(e.ctx, plain.Name); got.Preset != "" || len(got.TemplateVars) != 0 {
		t.Fatalf("a provider without preset: %s", asJSON(got))
	}
	bad := newProvider("bad")
	bad.TemplateVars = map[string]string{"tenant": "x"}
	wantCode(t, e.s.CreateProvider(e.ctx, bad), tokenkeeper.EINVALID)
	bad.Preset = "Not A Name!"
	wantCode(t, e.s.CreateProvider(e.ctx, bad), tokenkeeper.EINVALID)
	if _, err := e.s.Provider(e.ctx, "bad"); err == nil {
		t.Error("an invalid provider was created")
	}
}
