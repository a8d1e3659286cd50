package oauth_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/oauth"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// TestDeviceFlow runs the device authorization grant against oauthtest:
// pending, then approved; the device code never shows in String or errors.
func TestDeviceFlow(t *testing.T) {
	idp := oauthtest.NewServer(oauthtest.WithClient("tv", "tv-secret"), oauthtest.WithDeviceInterval(0))
	defer idp.Close()
	cfg := &oauth.Config{TokenURL: idp.TokenURL(), ClientID: "tv", ClientSecret: "tv-secret", AuthStyle: oauth.AuthStyleHeader, Scopes: []string{"read"}}
	d, err := cfg.DeviceAuthorization(context.Background(), idp.DeviceAuthorizationURL())
	if err != nil {
		t.Fatal(err)
	}
	if d.UserCode == "" || d.VerificationURI != idp.VerificationURL() || d.Interval <= 0 || !d.Expiry.After(time.Now()) {
		t.Fatalf("device authorization: %v", d)
	}
	if s := fmt.Sprint(d) + fmt.Sprintf("%#v", d); strings.Contains(s, d.DeviceCode) {
		t.Fatal("the device code is printed")
	}
	_, err = cfg.DeviceToken(context.Background(), d.DeviceCode)
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Code != "authorization_pending" || oauth.IsPermanent(err) || strings.Contains(err.Error(), d.DeviceCode) {
		t.Fatalf("before approval: %v", err)
	}
	if err := idp.ApproveDevice(d.UserCode); err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.DeviceToken(context.Background(), d.DeviceCode)
	if err != nil || !idp.ValidAccessToken(tok.AccessToken) {
		t.Fatalf("after approval: %v", err)
	}
	_, err = cfg.DeviceToken(context.Background(), d.DeviceCode)
	if err == nil {
		t.Fatal("a device code was redeemed twice")
	}
}

// TestDeviceAuthorizationBadResponses: answers that are not a device
// authorization response are errors that quote no secret.
func TestDeviceAuthorizationBadResponses(t *testing.T) {
	for name, tc := range map[string]struct {
		status int
		body   string
		want   string
	}{
		"error":          {400, `{"error":"invalid_client","error_description":"bad client s3cr3t-client"}`, "invalid_client"},
		"error in 200":   {200, `{"error":"unauthorized_client"}`, "unauthorized_client"},
		"no device code": {200, `{"user_code":"AB","verification_uri":"https://x.example/d","expires_in":600}`, "lacks device_code"},
		"no expiry":      {200, `{"device_code":"dc","user_code":"AB","verification_uri":"https://x.example/d"}`, "expires_in"},
		"html":           {502, `<html><body>bad gateway</body></html>`, "502"},
		"not an object":  {200, `[1,2]`, "not a JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			cfg := &oauth.Config{TokenURL: srv.URL + "/token", ClientID: "c", ClientSecret: "s3cr3t-client", AuthStyle: oauth.AuthStyleBody}
			_, err := cfg.DeviceAuthorization(context.Background(), srv.URL+"/device")
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cr3t-client") {
				t.Fatalf("err = %v, want one naming %q without the secret", err, tc.want)
			}
		})
	}
	// A usable answer with verification_url (an older spelling) and a string interval.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"device_code":"dc","user_code":"AB-CD","verification_url":"https://x.example/d","expires_in":"600","interval":"7"}`)
	}))
	defer srv.Close()
	cfg := &oauth.Config{TokenURL: srv.URL + "/token", ClientID: "c", AuthStyle: oauth.AuthStyleBody}
	d, err := cfg.DeviceAuthorization(context.Background(), srv.URL+"/device")
	if err != nil || d.VerificationURI != "https://x.example/d" || d.Interval != 7*time.Second || d.DeviceCode != "dc" {
		t.Fatalf("device authorization: %v, %v", d, err)
	}
}
