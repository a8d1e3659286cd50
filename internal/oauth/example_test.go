package oauth_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/oauth"
)

// A refresh that succeeds without a new refresh token: the caller keeps the
// one it has.
func ExampleConfig_Refresh() {
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"at-2","token_type":"bearer","expires_in":"3600"}`)
	}))
	defer idp.Close()

	cfg := &oauth.Config{
		TokenURL:     idp.URL + "/token",
		ClientID:     "my-client",
		ClientSecret: "my-secret",
		AuthStyle:    oauth.AuthStyleHeader,
	}
	refreshToken := "rt-1"
	tok, err := cfg.Refresh(context.Background(), refreshToken)
	if err != nil {
		fmt.Println("refresh failed:", oauth.Class(err))
		return
	}
	if tok.RefreshToken != "" {
		refreshToken = tok.RefreshToken // rotated: save it before using tok
	}
	fmt.Println(tok.TokenType, tok.ExpiresIn, refreshToken)
	// Output: Bearer 1h0m0s rt-1
}

// Telling permanent failures, which need someone to act, from temporary ones.
func ExampleIsPermanent() {
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"invalid_grant","error_description":"Token has been revoked."}`)
	}))
	defer idp.Close()

	cfg := &oauth.Config{TokenURL: idp.URL, ClientID: "my-client", ClientSecret: "my-secret", AuthStyle: oauth.AuthStyleBody}
	_, err := cfg.Refresh(context.Background(), "rt-revoked")
	switch {
	case errors.Is(err, oauth.ErrInvalidGrant):
		fmt.Println("needs re-authorization:", err)
	case oauth.IsPermanent(err):
		fmt.Println("permanent:", err)
	default:
		fmt.Println("retry after", max(oauth.RetryAfter(err), time.Second))
	}
	// Output: needs re-authorization: oauth: invalid_grant (HTTP 400): Token has been revoked.
}
