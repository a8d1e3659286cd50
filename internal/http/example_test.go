package http_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/auth"
	tkhttp "github.com/tokenkeeper/tokenkeeper/internal/http"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// A service in any language gets a credential's upstream token from the
// broker's standard token endpoint; in Go, golang.org/x/oauth2's
// clientcredentials package does it with no custom code.
func Example_oauth2ClientCredentials() {
	ctx := context.Background()
	// An upstream provider, and a broker on SQLite holding a credential for it.
	idp := oauthtest.NewServer(oauthtest.WithClient("upstream-app", "upstream-secret"))
	defer idp.Close()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	store, err := sqlite.Open(ctx, filepath.Join(dir, "tk.db"), key)
	if err != nil {
		panic(err)
	}
	defer store.Close()
	ref, _ := refresh.New(refresh.Config{Store: store})
	accounts, _ := auth.New(ctx, auth.Config{Store: store})
	broker := httptest.NewServer(tkhttp.NewServer(tkhttp.Config{Store: store, Refresher: ref, Auth: accounts, AuthStore: store}))
	defer broker.Close()
	_ = store.CreateCredential(ctx, &tokenkeeper.Credential{Name: "payments", TokenURL: idp.TokenURL(),
		GrantType: tokenkeeper.GrantClientCredentials, ClientID: "upstream-app", ClientSecret: "upstream-secret",
		AuthStyle: tokenkeeper.AuthStyleHeader, NextRefreshAt: time.Now()})
	// An operator creates a service client allowed to read "payments"
	// (tokenkeeper client add billing --credentials payments).
	secret, _, _ := accounts.CreateServiceClient(ctx, "billing", []string{"payments"})

	// The service: standard client credentials against the broker.
	cfg := clientcredentials.Config{
		ClientID: "billing", ClientSecret: secret,
		TokenURL: broker.URL + "/oauth2/token",
		Scopes:   []string{"credential:payments"},
	}
	resp, err := cfg.Client(ctx).Get(idp.ResourceURL()) // the upstream API, with the upstream token
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode == http.StatusOK)
	// Output: true
}
