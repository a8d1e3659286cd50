package sqlstore_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlstore"
)

// TestConnectFlowWebhooks: the hooks the connect flow calls write
// credential.connected and connect_session.failed deliveries to the
// endpoints subscribed to them, on every dialect.
func TestConnectFlowWebhooks(t *testing.T) {
	for _, d := range databases(t) {
		t.Run(d.dialect, func(t *testing.T) {
			ctx := context.Background()
			master := make([]byte, 32)
			rand.Read(master)
			st := d.open(t, master, 0, nil)
			s, ok := st.(interface {
				tokenkeeper.WebhookStore
				EnqueueConnectedForTest(context.Context, string) error
				EnqueueConnectSessionFailedForTest(context.Context, string, string, string) error
			})
			if !ok {
				t.Fatalf("%T has no webhook hooks", st)
			}
			both := &tokenkeeper.WebhookEndpoint{URL: "https://hooks.example/a", Secret: sqlstore.NewWebhookSecret(),
				Events: []string{tokenkeeper.WebhookCredentialConnected, tokenkeeper.WebhookConnectSessionFailed}}
			other := &tokenkeeper.WebhookEndpoint{URL: "https://hooks.example/b", Secret: sqlstore.NewWebhookSecret(),
				Events: []string{tokenkeeper.WebhookCredentialDeleted}}
			for _, e := range []*tokenkeeper.WebhookEndpoint{both, other} {
				if err := s.CreateWebhookEndpoint(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			c := &tokenkeeper.Credential{Name: "conn", TokenURL: "https://idp.example/token", GrantType: tokenkeeper.GrantRefreshToken,
				ClientID: "id", ClientSecret: "client-secret-xyz", RefreshToken: "refresh-token-xyz", AuthStyle: tokenkeeper.AuthStyleHeader}
			if err := st.CreateCredential(ctx, c); err != nil {
				t.Fatal(err)
			}
			if err := s.EnqueueConnectedForTest(ctx, "conn"); err != nil {
				t.Fatal(err)
			}
			if err := s.EnqueueConnectSessionFailedForTest(ctx, "github", "user-1", "access_denied"); err != nil {
				t.Fatal(err)
			}
			ds, err := s.WebhookDeliveries(ctx, both.ID, 10)
			if err != nil || len(ds) != 2 {
				t.Fatalf("deliveries: %d, %v", len(ds), err)
			}
			var failed, connected struct {
				Type string            `json:"type"`
				Data map[string]string `json:"data"`
			}
			json.Unmarshal(ds[0].Payload, &failed)
			json.Unmarshal(ds[1].Payload, &connected)
			if connected.Type != tokenkeeper.WebhookCredentialConnected || connected.Data["credential"] != "conn" || ds[1].CredentialID != c.ID {
				t.Fatalf("connected: %s", ds[1].Payload)
			}
			if failed.Type != tokenkeeper.WebhookConnectSessionFailed || failed.Data["provider"] != "github" || failed.Data["end_user"] != "user-1" ||
				failed.Data["last_error_code"] != "access_denied" || ds[0].CredentialID != "" {
				t.Fatalf("failed: %s", ds[0].Payload)
			}
			for _, d := range ds {
				if !json.Valid(d.Payload) || containsAny(string(d.Payload), c.ClientSecret, c.RefreshToken) {
					t.Fatalf("payload %s", d.Payload)
				}
			}
			if ds, _ := s.WebhookDeliveries(ctx, other.ID, 10); len(ds) != 0 {
				t.Fatalf("an endpoint not subscribed got %d deliveries", len(ds))
			}
		})
	}
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}
