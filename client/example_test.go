package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/tokenkeeper/tokenkeeper/client"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

func ExampleClientCredentials() {
	// A test provider; in production, your provider's token endpoint.
	idp := oauthtest.NewServer(oauthtest.WithClient("my-service", "my-secret"))
	defer idp.Close()

	src, err := client.ClientCredentials(client.Config{
		TokenURL:     idp.TokenURL(),
		ClientID:     "my-service",
		ClientSecret: "my-secret",
		AuthStyle:    client.AuthStyleHeader, // explicit: never probed
		Scopes:       []string{"read"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	// Always a valid token: refreshed in the background before it expires.
	tok, err := src.Token()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.Type(), idp.ValidAccessToken(tok.AccessToken))
	// Output: Bearer true
}

func ExampleRefreshToken() {
	idp := oauthtest.NewServer(oauthtest.WithClient("app", "secret"),
		oauthtest.WithRotation(true), oauthtest.WithReuseDetection(0))
	defer idp.Close()
	issued := idp.IssueRefreshToken("app", "") // from your authorization code flow

	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// Every new token, and each rotated refresh token, is written to this
	// file (atomically, mode 0600) before anyone uses it.
	store, err := client.NewFileStore(filepath.Join(dir, "token.json"))
	if err != nil {
		log.Fatal(err)
	}
	cfg := client.Config{TokenURL: idp.TokenURL(), ClientID: "app", ClientSecret: "secret", AuthStyle: client.AuthStyleBody}

	src, err := client.RefreshToken(cfg, issued, client.WithStore(store))
	if err != nil {
		log.Fatal(err)
	}
	tok, err := src.Token()
	if err != nil {
		log.Fatal(err)
	}
	src.Close()
	saved, _ := store.Load(context.Background())
	fmt.Println("rotated refresh token saved:", saved.RefreshToken == tok.RefreshToken && saved.RefreshToken != issued)

	// After a restart, pass the same issued token: the stored, newer one
	// wins, so the provider never sees a refresh token twice.
	src, err = client.RefreshToken(cfg, issued, client.WithStore(store))
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Token(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("reuse detections:", idp.Stats().ReuseDetections)
	// Output:
	// rotated refresh token saved: true
	// reuse detections: 0
}

func ExampleTransport() {
	idp := oauthtest.NewServer(oauthtest.WithClient("svc", "secret"))
	defer idp.Close()
	src, err := client.ClientCredentials(client.Config{
		TokenURL: idp.TokenURL(), ClientID: "svc", ClientSecret: "secret", AuthStyle: client.AuthStyleHeader,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	hc := &http.Client{Transport: &client.Transport{Source: src}}
	get := func() int {
		resp, err := hc.Get(idp.ResourceURL())
		if err != nil {
			log.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	fmt.Println(get())
	// The provider revokes the token: the resource answers 401, the
	// Transport gets a new token and replays the request.
	idp.RevokeAll()
	fmt.Println(get())
	fmt.Println("token requests:", idp.Stats().TokenRequests["client_credentials"])
	// Output:
	// 200
	// 200
	// token requests: 2
}

func ExampleNewBroker() {
	// A stand-in for `tokenkeeper serve`, answering for credential "github".
	broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tk_example" || r.URL.Path != "/v1/credentials/github/token" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"type":"about:blank","title":"Not Found","status":404,"detail":"no such credential"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"access_token": "gho_from_the_broker",
			"token_type":   "Bearer",
			"expires_at":   time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
			"expires_in":   3600,
		})
	}))
	defer broker.Close()

	src, err := client.NewBroker(client.BrokerConfig{URL: broker.URL, APIKey: "tk_example", Credential: "github"})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	// Use it like any token source, typically through a Transport:
	// &http.Client{Transport: &client.Transport{Source: src}}.
	tok, err := src.Token()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.AccessToken)

	// A credential the key may not read: a permanent *BrokerError.
	other, _ := client.NewBroker(client.BrokerConfig{URL: broker.URL, APIKey: "tk_example", Credential: "gitlab"})
	defer other.Close()
	_, err = other.Token()
	var be *client.BrokerError
	fmt.Println(errors.As(err, &be), be.StatusCode, client.IsPermanent(err))
	// Output:
	// gho_from_the_broker
	// true 404 true
}

func ExampleIsPermanent() {
	idp := oauthtest.NewServer(oauthtest.WithClient("app", "secret"))
	defer idp.Close()
	src, _ := client.RefreshToken(client.Config{
		TokenURL: idp.TokenURL(), ClientID: "app", ClientSecret: "secret", AuthStyle: client.AuthStyleHeader,
	}, "a-revoked-refresh-token")
	defer src.Close()

	_, err := src.Token()
	switch {
	case errors.Is(err, client.ErrInvalidGrant):
		fmt.Println("the user must authorize again; no further attempts are made")
	case client.IsPermanent(err):
		fmt.Println("fix the configuration")
	case err != nil:
		fmt.Println("temporary; retried in the background")
	}
	// Output: the user must authorize again; no further attempts are made
}
