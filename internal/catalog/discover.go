package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

// Discovered is what an authorization server's metadata says about it:
// OpenID Connect Discovery 1.0 or RFC 8414.
type Discovered struct {
	Issuer                 string
	Document               string // the URL the metadata was read from
	AuthorizationURL       string
	TokenURL               string
	DeviceAuthorizationURL string
	RevocationURL          string
	// AuthStyle is the style the server supports: header when it lists
	// client_secret_basic (or lists nothing, the RFC 8414 default), else
	// body when it lists client_secret_post.
	AuthStyle tokenkeeper.AuthStyle
	// PKCE is S256 unless the server lists code challenge methods without
	// S256.
	PKCE string
	// Scopes are the OpenID scopes worth asking for by default: openid and
	// offline_access when the server lists them.
	Scopes []string
}

// maxMetadata bounds the metadata document read.
const maxMetadata = 1 << 20

// Discover reads the metadata of issuer: first
// {issuer}/.well-known/openid-configuration, then (RFC 8414 §3)
// https://host/.well-known/oauth-authorization-server{path}. The issuer
// must be https, or http on a loopback address; the document's issuer must
// equal the one given, and its endpoints must obey the same rule. Redirects
// are not followed. Every failure is an EINVALID that says why.
func Discover(ctx context.Context, hc *http.Client, issuer string) (*Discovered, error) {
	if err := secureURL("issuer", issuer); err != nil {
		return nil, err
	}
	u, _ := url.Parse(issuer)
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "issuer must not have a query or fragment")
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	cp := *hc
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	path := strings.TrimSuffix(u.Path, "/")
	docs := []string{
		u.Scheme + "://" + u.Host + path + "/.well-known/openid-configuration",
		u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + path,
	}
	var whys []string
	for _, doc := range docs {
		d, err := fetchMetadata(ctx, &cp, doc)
		if err != nil {
			whys = append(whys, fmt.Sprintf("%s: %v", doc, err))
			var nf notFound
			if errors.As(err, &nf) {
				continue // try the RFC 8414 location
			}
			break
		}
		return check(d, issuer, doc)
	}
	return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "discovery of %s failed: %s", issuer, strings.Join(whys, "; "))
}

type notFound struct{ status int }

func (e notFound) Error() string { return fmt.Sprintf("HTTP %d", e.status) }

// metadataDoc holds the members of a metadata document tokenkeeper uses.
type metadataDoc struct {
	Issuer                      string   `json:"issuer"`
	AuthorizationEndpoint       string   `json:"authorization_endpoint"`
	TokenEndpoint               string   `json:"token_endpoint"`
	DeviceAuthorizationEndpoint string   `json:"device_authorization_endpoint"`
	RevocationEndpoint          string   `json:"revocation_endpoint"`
	TokenEndpointAuthMethods    []string `json:"token_endpoint_auth_methods_supported"`
	CodeChallengeMethods        []string `json:"code_challenge_methods_supported"`
	ScopesSupported             []string `json:"scopes_supported"`
}

func fetchMetadata(ctx context.Context, hc *http.Client, doc string) (*metadataDoc, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, doc, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return nil, notFound{resp.StatusCode}
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, fmt.Errorf("HTTP %d redirect, not followed", resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadata+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(b) > maxMetadata {
		return nil, fmt.Errorf("document larger than %d bytes", maxMetadata)
	}
	var d metadataDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, errors.New("not a JSON metadata document")
	}
	return &d, nil
}

func check(d *metadataDoc, issuer, doc string) (*Discovered, error) {
	if d.Issuer != issuer {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "discovery of %s refused: the document at %s names issuer %q, not the one given", issuer, doc, clip(d.Issuer, 200))
	}
	if d.TokenEndpoint == "" {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "discovery of %s refused: the document names no token_endpoint", issuer)
	}
	for _, ep := range []struct{ name, u string }{
		{"token_endpoint", d.TokenEndpoint}, {"authorization_endpoint", d.AuthorizationEndpoint},
		{"device_authorization_endpoint", d.DeviceAuthorizationEndpoint}, {"revocation_endpoint", d.RevocationEndpoint},
	} {
		if ep.u == "" {
			continue
		}
		if err := secureURL(ep.name, ep.u); err != nil {
			return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "discovery of %s refused: %s", issuer, err.(*tokenkeeper.Error).Message)
		}
	}
	out := &Discovered{Issuer: d.Issuer, Document: doc, AuthorizationURL: d.AuthorizationEndpoint, TokenURL: d.TokenEndpoint,
		DeviceAuthorizationURL: d.DeviceAuthorizationEndpoint, RevocationURL: d.RevocationEndpoint,
		AuthStyle: tokenkeeper.AuthStyleHeader, PKCE: tokenkeeper.PKCES256}
	if m := d.TokenEndpointAuthMethods; len(m) > 0 && !slices.Contains(m, "client_secret_basic") && slices.Contains(m, "client_secret_post") {
		out.AuthStyle = tokenkeeper.AuthStyleBody
	}
	if m := d.CodeChallengeMethods; len(m) > 0 && !slices.Contains(m, "S256") {
		out.PKCE = tokenkeeper.PKCENone
	}
	for _, s := range []string{"openid", "offline_access"} {
		if slices.Contains(d.ScopesSupported, s) {
			out.Scopes = append(out.Scopes, s)
		}
	}
	return out, nil
}

// secureURL checks that raw is an absolute https URL, or http to a
// loopback address (a test or a local server), without user information.
func secureURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "%s must be an absolute URL without user information", field)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			return nil
		}
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "%s %s has no TLS: only loopback addresses may use http", field, clip(u.Scheme+"://"+u.Host, 200))
	}
	return tokenkeeper.Errorf(tokenkeeper.EINVALID, "%s must be an https URL", field)
}
