package storetest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/seal"
)

func testServiceClients(e *authEnv) {
	t := e.t
	billing := &tokenkeeper.ServiceClient{ClientID: "billing", SecretHash: sum(secret("cs")), Credentials: []string{"stripe", "github.app"}}
	if err := e.a.CreateServiceClient(e.ctx, billing); err != nil {
		t.Fatal(err)
	}
	if billing.ID == "" || !billing.CreatedAt.Equal(start) || !billing.UpdatedAt.Equal(start) {
		t.Fatalf("CreateServiceClient assigned %s", asJSON(billing))
	}
	e.clock.Add(time.Second)
	batch := &tokenkeeper.ServiceClient{ClientID: "Batch", SecretHash: sum(secret("cs"))}
	if err := e.a.CreateServiceClient(e.ctx, batch); err != nil {
		t.Fatal(err)
	}
	got, err := e.a.ServiceClient(e.ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	same(t, "ServiceClient(billing)", got, billing)
	if !got.CanRead("stripe") || got.CanRead("other") {
		t.Fatal("grants did not survive the round trip")
	}
	all, err := e.a.ServiceClients(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "ServiceClients", all, []*tokenkeeper.ServiceClient{batch, billing})

	dup := &tokenkeeper.ServiceClient{ClientID: "billing", SecretHash: sum("x")}
	wantCode(t, e.a.CreateServiceClient(e.ctx, dup), tokenkeeper.ECONFLICT)

	now := e.clock.Add(time.Minute)
	h := sum(secret("rotated"))
	if err := e.a.SetServiceClientSecret(e.ctx, "billing", h); err != nil {
		t.Fatal(err)
	}
	billing.SecretHash, billing.UpdatedAt = h, now
	got, _ = e.a.ServiceClient(e.ctx, "billing")
	same(t, "client after SetServiceClientSecret", got, billing)
	wantCode(t, e.a.SetServiceClientSecret(e.ctx, "nobody", h), tokenkeeper.ENOTFOUND)
	wantCode(t, e.a.SetServiceClientSecret(e.ctx, "billing", h[:31]), tokenkeeper.EINVALID)
	wantCode(t, e.a.SetServiceClientSecret(e.ctx, "billing", nil), tokenkeeper.EINVALID)
	got, _ = e.a.ServiceClient(e.ctx, "billing")
	same(t, "client after refused secrets", got, billing)

	if err := e.a.DeleteServiceClient(e.ctx, "billing"); err != nil {
		t.Fatal(err)
	}
	_, err = e.a.ServiceClient(e.ctx, "billing")
	wantCode(t, err, tokenkeeper.ENOTFOUND)
	wantCode(t, e.a.DeleteServiceClient(e.ctx, "billing"), tokenkeeper.ENOTFOUND)
	all, _ = e.a.ServiceClients(e.ctx)
	same(t, "ServiceClients after delete", all, []*tokenkeeper.ServiceClient{batch})
	// A peer sees the same clients.
	pall, err := e.peer().ServiceClients(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "peer ServiceClients", pall, all)
}

func testServiceClientsInvalid(e *authEnv) {
	t := e.t
	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	for _, tc := range []struct {
		name string
		edit func(c *tokenkeeper.ServiceClient)
	}{
		{"no client_id", func(c *tokenkeeper.ServiceClient) { c.ClientID = "" }},
		{"bad client_id", func(c *tokenkeeper.ServiceClient) { c.ClientID = "svc:1" }},
		{"client_id with NUL", func(c *tokenkeeper.ServiceClient) { c.ClientID = "svc\x00" }},
		{"no secret hash", func(c *tokenkeeper.ServiceClient) { c.SecretHash = nil }},
		{"short secret hash", func(c *tokenkeeper.ServiceClient) { c.SecretHash = c.SecretHash[:31] }},
		{"long secret hash", func(c *tokenkeeper.ServiceClient) { c.SecretHash = append(c.SecretHash, 0) }},
		{"bad credential name", func(c *tokenkeeper.ServiceClient) { c.Credentials = []string{"ok", "not ok"} }},
		{"empty credential name", func(c *tokenkeeper.ServiceClient) { c.Credentials = []string{""} }},
		{"too many credentials", func(c *tokenkeeper.ServiceClient) { c.Credentials = many }},
	} {
		c := &tokenkeeper.ServiceClient{ClientID: "svc", SecretHash: sum("s"), Credentials: []string{"a"}}
		tc.edit(c)
		before := asJSON(c)
		if err := e.a.CreateServiceClient(e.ctx, c); tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("%s: %v, want EINVALID", tc.name, err)
		}
		if asJSON(c) != before {
			t.Errorf("%s: a refused CreateServiceClient changed its argument", tc.name)
		}
	}
	wantCode(t, e.a.CreateServiceClient(e.ctx, nil), tokenkeeper.EINVALID)
	if n := e.count(`SELECT COUNT(*) FROM service_clients`); n != 0 {
		t.Fatalf("%d refused clients stored", n)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func testSigningKeys(e *authEnv) {
	t := e.t
	k1 := &tokenkeeper.SigningKey{ID: "k1", Algorithm: "HS256", Secret: randomBytes(32)}
	if err := e.a.AddSigningKey(e.ctx, k1); err != nil {
		t.Fatal(err)
	}
	if !k1.CreatedAt.Equal(start) {
		t.Fatalf("CreatedAt = %v", k1.CreatedAt)
	}
	e.clock.Add(time.Hour)
	k2 := &tokenkeeper.SigningKey{ID: "k2", Algorithm: "HS512", Secret: randomBytes(64)}
	if err := e.a.AddSigningKey(e.ctx, k2); err != nil {
		t.Fatal(err)
	}
	// Added at the same instant: the higher id counts as newer, everywhere.
	k0 := &tokenkeeper.SigningKey{ID: "k0", Algorithm: "HS256", Secret: randomBytes(40)}
	if err := e.a.AddSigningKey(e.ctx, k0); err != nil {
		t.Fatal(err)
	}
	want := []*tokenkeeper.SigningKey{k2, k0, k1}
	got, err := e.a.SigningKeys(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "SigningKeys", got, want)
	got, err = e.peer().SigningKeys(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "peer SigningKeys", got, want)

	dup := &tokenkeeper.SigningKey{ID: "k1", Algorithm: "HS256", Secret: randomBytes(32)}
	wantCode(t, e.a.AddSigningKey(e.ctx, dup), tokenkeeper.ECONFLICT)
	got, _ = e.a.SigningKeys(e.ctx)
	same(t, "SigningKeys after a duplicate", got, want)
	// The caller's slice is not kept.
	k1.Secret[0] ^= 0xff
	got, _ = e.a.SigningKeys(e.ctx)
	if bytes.Equal(got[2].Secret, k1.Secret) {
		t.Fatal("AddSigningKey kept the caller's secret slice")
	}
}

func testSigningKeysInvalid(e *authEnv) {
	t := e.t
	for _, tc := range []struct {
		name string
		edit func(k *tokenkeeper.SigningKey)
	}{
		{"no id", func(k *tokenkeeper.SigningKey) { k.ID = "" }},
		{"bad id", func(k *tokenkeeper.SigningKey) { k.ID = "k/1" }},
		{"no algorithm", func(k *tokenkeeper.SigningKey) { k.Algorithm = "" }},
		{"bad algorithm", func(k *tokenkeeper.SigningKey) { k.Algorithm = "HS 256" }},
		{"long algorithm", func(k *tokenkeeper.SigningKey) { k.Algorithm = strings.Repeat("A", 33) }},
		{"no secret", func(k *tokenkeeper.SigningKey) { k.Secret = nil }},
		{"short secret", func(k *tokenkeeper.SigningKey) { k.Secret = k.Secret[:31] }},
		{"huge secret", func(k *tokenkeeper.SigningKey) { k.Secret = randomBytes(16385) }},
	} {
		k := &tokenkeeper.SigningKey{ID: "k", Algorithm: "HS256", Secret: randomBytes(32)}
		tc.edit(k)
		err := e.a.AddSigningKey(e.ctx, k)
		if tokenkeeper.ErrorCode(err) != tokenkeeper.EINVALID {
			t.Errorf("%s: %v, want EINVALID", tc.name, err)
		}
		if len(k.Secret) > 0 {
			checkErrNoSecret(t, err, []string{string(k.Secret)})
		}
	}
	wantCode(t, e.a.AddSigningKey(e.ctx, nil), tokenkeeper.EINVALID)
	if keys, err := e.a.SigningKeys(e.ctx); err != nil || len(keys) != 0 {
		t.Fatalf("refused keys stored: %d, %v", len(keys), err)
	}
}

// testSigningKeyMoved checks that a signing key's sealed secret is bound to
// its row: copied to another key's row with raw SQL, it no longer opens.
func testSigningKeyMoved(e *authEnv) {
	t := e.t
	a := &tokenkeeper.SigningKey{ID: "a", Algorithm: "HS256", Secret: randomBytes(32)}
	b := &tokenkeeper.SigningKey{ID: "b", Algorithm: "HS256", Secret: randomBytes(32)}
	for _, k := range []*tokenkeeper.SigningKey{a, b} {
		if err := e.a.AddSigningKey(e.ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Exec(e.ctx, `UPDATE signing_keys SET secret = (SELECT secret FROM signing_keys WHERE id = $1) WHERE id = $2`, a.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	_, err := e.a.SigningKeys(e.ctx)
	if err == nil {
		t.Fatal("a signing key secret moved from another row opened")
	}
	checkErrNoSecret(t, err, []string{string(a.Secret), string(b.Secret)})
	// A credential's sealed secret moved into a signing key does not open
	// either: the table and the column are bound too.
	c := e.create(newCred("c"))
	if err := e.Exec(e.ctx, `UPDATE signing_keys SET secret = (SELECT client_secret FROM providers WHERE id = $1) WHERE id = $2`, c.ProviderID, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.SigningKeys(e.ctx); err == nil {
		t.Fatal("a credential's sealed secret opened as a signing key")
	}
	if _, err := e.s.RotateKey(e.ctx); err == nil {
		t.Fatal("RotateKey re-sealed a moved signing key secret")
	}
}

func testRotateKeySigningKeys(e *authEnv) {
	t := e.t
	cc := newCred("cc")
	cc.GrantType, cc.RefreshToken = tokenkeeper.GrantClientCredentials, ""
	e.create(cc) // 1 sealed value
	keys := []*tokenkeeper.SigningKey{
		{ID: "k1", Algorithm: "HS256", Secret: randomBytes(32)},
		{ID: "k2", Algorithm: "HS256", Secret: randomBytes(48)},
	}
	for _, k := range keys {
		e.clock.Add(time.Second)
		if err := e.a.AddSigningKey(e.ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	keyOf := func(id string) uint32 {
		t.Helper()
		var ct []byte
		if err := e.QueryRow(e.ctx, `SELECT secret FROM signing_keys WHERE id = $1`, id).Scan(&ct); err != nil {
			t.Fatal(err)
		}
		kid, err := seal.KeyID(ct)
		if err != nil {
			t.Fatal(err)
		}
		return kid
	}
	before := keyOf("k1")
	peer := e.peer() // loaded the keys before the rotation

	n, err := e.s.RotateKey(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("RotateKey re-sealed %d secrets, want 3 (1 credential secret, 2 signing keys)", n)
	}
	after := e.keyIDOf(cc.ID, "client_secret")
	if after == before {
		t.Fatal("the data key did not change")
	}
	for _, k := range keys {
		if got := keyOf(k.ID); got != after {
			t.Errorf("signing key %s sealed with data key %d, want %d", k.ID, got, after)
		}
	}
	want := []*tokenkeeper.SigningKey{keys[1], keys[0]}
	got, err := e.a.SigningKeys(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "SigningKeys after RotateKey", got, want)
	// The peer opens secrets sealed with a key it has never seen, and its
	// own rotation counts the same secrets.
	got, err = peer.SigningKeys(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "peer SigningKeys after RotateKey", got, want)
	k3 := &tokenkeeper.SigningKey{ID: "k3", Algorithm: "HS256", Secret: randomBytes(32)}
	if err := e.a.AddSigningKey(e.ctx, k3); err != nil {
		t.Fatal(err)
	}
	if got := keyOf("k3"); got != after {
		t.Errorf("a new signing key sealed with data key %d, want %d", got, after)
	}
	if n, err := peer.(tokenkeeper.Store).RotateKey(e.ctx); err != nil || n != 4 {
		t.Fatalf("RotateKey on the peer: %d, %v; want 4", n, err)
	}
	got, err = e.a.SigningKeys(e.ctx)
	if err != nil || len(got) != 3 {
		t.Fatalf("SigningKeys after the peer's rotation: %d, %v", len(got), err)
	}
}

// testAuthSecretsNotAtRest is invariant 5 for the auth store: a raw scan
// finds no signing key secret, and none of the secrets whose hashes the
// store keeps (passwords, refresh tokens, client secrets); the hashes and
// the names are there.
func testAuthSecretsNotAtRest(e *authEnv) {
	t := e.t
	var secrets []string
	var positive [][]byte

	password := secret("password")
	u := &tokenkeeper.User{Username: "pat", PasswordHash: passwordHash(password), Role: tokenkeeper.RoleAdmin}
	if err := e.a.CreateUser(e.ctx, u); err != nil {
		t.Fatal(err)
	}
	password2 := secret("new-password")
	if err := e.a.SetUserPassword(e.ctx, "pat", passwordHash(password2)); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, password, password2)
	positive = append(positive, []byte("pat"))

	rt, token := e.newRefresh(u.ID)
	if err := e.a.CreateRefreshToken(e.ctx, rt); err != nil {
		t.Fatal(err)
	}
	now := e.clock.Add(time.Minute)
	token2 := secret("refresh-2")
	next := &tokenkeeper.RefreshToken{Hash: sum(token2), ExpiresAt: now.Add(time.Hour)}
	if err := e.a.RotateRefreshToken(e.ctx, rt.ID, now, next); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, token, token2)
	positive = append(positive, []byte(rt.FamilyID))

	clientSecret, clientSecret2 := secret("client-secret"), secret("client-secret-2")
	c := &tokenkeeper.ServiceClient{ClientID: "svc-quux", SecretHash: sum(clientSecret), Credentials: []string{"github"}}
	if err := e.a.CreateServiceClient(e.ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := e.a.SetServiceClientSecret(e.ctx, "svc-quux", sum(clientSecret2)); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, clientSecret, clientSecret2)
	positive = append(positive, []byte("svc-quux"))

	// Signing key secrets: printable, and raw random bytes.
	printable := &tokenkeeper.SigningKey{ID: "kid-printable", Algorithm: "HS256", Secret: []byte(secret("signing-key"))}
	binary := &tokenkeeper.SigningKey{ID: "kid-binary", Algorithm: "HS256", Secret: randomBytes(32)}
	for _, k := range []*tokenkeeper.SigningKey{printable, binary} {
		if err := e.a.AddSigningKey(e.ctx, k); err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, string(k.Secret))
		positive = append(positive, []byte(k.ID))
	}
	// A key rotation re-seals the signing keys.
	if _, err := e.s.RotateKey(e.ctx); err != nil {
		t.Fatal(err)
	}
	keys, err := e.a.SigningKeys(e.ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("SigningKeys: %d, %v", len(keys), err)
	}
	for _, k := range keys {
		want := printable
		if k.ID == binary.ID {
			want = binary
		}
		if !bytes.Equal(k.Secret, want.Secret) {
			t.Fatalf("signing key %s did not survive the round trip", k.ID)
		}
	}
	// An audit record names things, never secrets.
	if err := e.a.AddAudit(e.ctx, &tokenkeeper.AuditRecord{Actor: "user:pat", Action: "auth.login", Target: "pat", Outcome: "ok", RemoteAddr: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	positive = append(positive, []byte("auth.login"))

	dump := e.RawDump(t)
	checkNoSecret(t, "raw database dump", dump, secrets)
	if bytes.Contains(dump, binary.Secret) {
		t.Error("raw database dump contains a binary signing key secret")
	}
	for _, p := range positive {
		if !bytes.Contains(dump, p) {
			t.Fatalf("raw dump lacks the non-secret %q: the dump does not cover the data", p)
		}
	}
	// The stored password hash is what the caller gave: no secret in it.
	got, err := e.a.User(e.ctx, "pat")
	if err != nil {
		t.Fatal(err)
	}
	checkNoSecret(t, "password hash", []byte(got.PasswordHash), secrets)
}
