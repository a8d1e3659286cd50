package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"
)

// firstTokenError is a credential whose first token request failed. The
// credential is kept (in its failed status); the message says how to fix
// or remove it.
type firstTokenError struct {
	name, status, code, message string
}

func (e *firstTokenError) Error() string {
	msg := fmt.Sprintf("credential %q was added, but its first token request failed: %s", e.name, e.code)
	if e.message != "" && e.message != e.code {
		msg += ": " + e.message
	}
	msg += fmt.Sprintf("\nThe credential is kept with status %s. Fix it with 'tokenkeeper credential update %s' and the right --client-secret-file, --client-id, --token-url, --scopes or --refresh-token-file (it is tried again at once), or remove it with 'tokenkeeper credential rm %s'.", e.status, e.name, e.name)
	return msg
}

// waitFirstToken polls the credential until its first refresh attempt has
// ended: it returns the credential with its first token, a
// *firstTokenError when the attempt failed, or an error when timeout
// passes first.
func (cl *apiClient) waitFirstToken(ctx context.Context, name string, timeout time.Duration) (json.RawMessage, *credentialView, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var raw json.RawMessage
		err := cl.do(ctx, "GET", "/v1/credentials/"+url.PathEscape(name), nil, &raw)
		if err == nil {
			var v credentialView
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, nil, fmt.Errorf("decode credential: %w", err)
			}
			switch {
			case v.ExpiresAt != nil && v.FailureCount == 0:
				return raw, &v, nil
			case v.Status == "needs_reauth" || v.Status == "error" || v.FailureCount > 0:
				code := v.LastErrorCode
				if code == "" {
					code = "error"
				}
				return raw, &v, &firstTokenError{name: name, status: v.Status, code: code, message: v.LastError}
			}
		} else if ctx.Err() == nil {
			return nil, nil, fmt.Errorf("check the new credential: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("credential %q was added, but it has no token after %s: the broker keeps trying; see 'tokenkeeper credential show %s' and 'tokenkeeper credential events %s'", name, timeout, name, name)
		case <-tick.C:
		}
	}
}
