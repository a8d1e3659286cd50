package http

import (
	"net/url"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

// redirectsSecrets reports whether the update changes where or how the
// credential's secrets are sent: the token URL, the client id, the client
// authentication style, the extra parameters or the scopes.
func (req *credentialUpdateRequest) redirectsSecrets() bool {
	return req.TokenURL != nil || req.ClientID != nil || req.AuthStyle != nil || req.Params != nil || req.Scopes != nil
}

// endpointOrigin is the scheme and host (with port) of a URL, lower case;
// "" when u does not parse.
func endpointOrigin(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return strings.ToLower(p.Scheme + "://" + p.Host)
}

// clearSecretsOnHostChange makes an update that moves the token endpoint
// to another host (or scheme or port) forget the stored secrets, so that
// they are never sent to a host they were not given for: the client secret
// and the refresh token are cleared unless the same update gives new ones.
// The secret the grant cannot work without must then be given: EINVALID
// otherwise, and nothing changes.
func clearSecretsOnHostChange(cur *tokenkeeper.Credential, newURL string, upd *tokenkeeper.CredentialUpdate) error {
	if endpointOrigin(cur.TokenURL) == endpointOrigin(newURL) && endpointOrigin(newURL) != "" {
		return nil
	}
	empty := ""
	if upd.ClientSecret == nil {
		if cur.GrantType == tokenkeeper.GrantClientCredentials && cur.ClientSecret != "" {
			return tokenkeeper.Errorf(tokenkeeper.EINVALID, "token_url moves to another host: give client_secret again in the same request (the stored one is never sent to a new host)")
		}
		upd.ClientSecret = &empty
	}
	if upd.RefreshToken == nil {
		if cur.GrantType == tokenkeeper.GrantRefreshToken && cur.RefreshToken != "" {
			return tokenkeeper.Errorf(tokenkeeper.EINVALID, "token_url moves to another host: give refresh_token again in the same request (the stored one is never sent to a new host)")
		}
		upd.RefreshToken = &empty
	}
	return clearSecretParamsOnHostChange(cur, upd)
}

// clearSecretParamsOnHostChange drops the stored secret params
// (tokenkeeper.IsSecretParam) of a credential moving to another host,
// unless the request gives params: then none of them may keep a stored
// value by tokenkeeper.SealedParamValue.
func clearSecretParamsOnHostChange(cur *tokenkeeper.Credential, upd *tokenkeeper.CredentialUpdate) error {
	if upd.Params != nil {
		for k, v := range *upd.Params {
			if v == tokenkeeper.SealedParamValue && tokenkeeper.IsSecretParam(k) {
				return tokenkeeper.Errorf(tokenkeeper.EINVALID, "token_url moves to another host: give param %q again in the same request (the stored one is never sent to a new host)", k)
			}
		}
		return nil
	}
	var kept map[string]string
	dropped := false
	for k, v := range cur.Params {
		if tokenkeeper.IsSecretParam(k) {
			dropped = true
			continue
		}
		if kept == nil {
			kept = map[string]string{}
		}
		kept[k] = v
	}
	if dropped {
		if kept == nil {
			kept = map[string]string{}
		}
		upd.Params = &kept
	}
	return nil
}

// checkTokenURL applies the configured TokenURLCheck: EINVALID if it
// refuses u.
func (s *server) checkTokenURL(u string) error {
	if s.tokenURLCheck == nil {
		return nil
	}
	if err := s.tokenURLCheck(u); err != nil {
		return tokenkeeper.Errorf(tokenkeeper.EINVALID, "token_url refused: %v", err)
	}
	return nil
}
