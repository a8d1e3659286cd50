package catalog

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

func TestDiscoverOIDCAndRFC8414(t *testing.T) {
	for _, oidc := range []bool{true, false} {
		t.Run(fmt.Sprintf("oidc=%v", oidc), func(t *testing.T) {
			idp := oauthtest.NewServer(oauthtest.WithOIDC(oidc))
			defer idp.Close()
			d, err := Discover(context.Background(), nil, idp.URL())
			if err != nil {
				t.Fatal(err)
			}
			if d.TokenURL != idp.TokenURL() || d.AuthorizationURL != idp.AuthorizeURL() || d.Issuer != idp.URL() || d.PKCE != tokenkeeper.PKCES256 {
				t.Errorf("discovered %+v", d)
			}
			wantDoc := "/.well-known/oauth-authorization-server"
			if oidc {
				wantDoc = "/.well-known/openid-configuration"
			}
			if !strings.HasSuffix(d.Document, wantDoc) {
				t.Errorf("read %s, want %s", d.Document, wantDoc)
			}
			p := &tokenkeeper.Provider{Name: "idp", AuthorizationURL: d.AuthorizationURL, TokenURL: d.TokenURL,
				DeviceAuthorizationURL: d.DeviceAuthorizationURL, RevocationURL: d.RevocationURL,
				ClientID: "c", AuthStyle: d.AuthStyle, PKCE: d.PKCE, Scopes: d.Scopes}
			if err := p.Validate(); err != nil {
				t.Errorf("discovered provider invalid: %v", err)
			}
		})
	}
}

func TestDiscoverRefusals(t *testing.T) {
	var hits atomic.Int32
	var doc string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch doc {
		case "redirect":
			http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
		case "500":
			w.WriteHeader(500)
		case "html":
			fmt.Fprint(w, "<html>hi</html>")
		default:
			fmt.Fprint(w, strings.ReplaceAll(doc, "ISS", "http://"+r.Host))
		}
	}))
	defer srv.Close()
	for _, tt := range []struct {
		name, doc, issuer, want string
	}{
		{"other issuer", `{"issuer":"https://evil.example","token_endpoint":"ISS/token"}`, "", `names issuer "https://evil.example", not the one given`},
		{"no token endpoint", `{"issuer":"ISS","authorization_endpoint":"ISS/authorize"}`, "", "no token_endpoint"},
		{"endpoint without TLS", `{"issuer":"ISS","token_endpoint":"http://idp.example/token"}`, "", "token_endpoint http://idp.example has no TLS"},
		{"redirect", "redirect", "", "redirect, not followed"},
		{"server error", "500", "", "HTTP 500"},
		{"not JSON", "html", "", "not a JSON metadata document"},
		{"issuer without TLS", "", "http://idp.example", "has no TLS"},
		{"issuer with query", "", "QUERY", "query"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc = tt.doc
			hits.Store(0)
			issuer := srv.URL
			switch tt.issuer {
			case "":
			case "QUERY":
				issuer = srv.URL + "?x=1"
			default:
				issuer = tt.issuer
			}
			d, err := Discover(context.Background(), nil, issuer)
			if d != nil || !isInvalid(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Discover = %+v, %v; want EINVALID with %q", d, err, tt.want)
			}
			if tt.doc == "" && hits.Load() != 0 {
				t.Errorf("%d requests for an issuer refused up front", hits.Load())
			}
		})
	}
}
