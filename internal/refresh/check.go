package refresh

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/catalog"
)

// maxCheckBody bounds how much of a token check's answer is read.
const maxCheckBody = 64 << 10

// checkInstead runs the token check of c's profile (catalog.Check, which
// profiles whose refresh tokens die when idle may not have: their
// keep-alive must use the refresh token) in place of a keep-alive refresh:
// for a claimed credential that is due,
// whose access token never expires (it has more life left than the
// keep-alive interval, so this is a keep-alive and not an expiry refresh),
// and whose provider has an API base URL; the caller calls it only for a
// scheduled attempt that no consumer's rejected token asked for. When the API takes the token, it returns the result to commit:
// the same token, rescheduled at the next keep-alive, no provider token
// call and no refresh token spent. Otherwise (the check failed, or does
// not apply) it returns nil and the caller refreshes: a revoked grant then
// fails with invalid_grant and needs re-authorization.
func (r *Refresher) checkInstead(ctx context.Context, c *tokenkeeper.Credential) *tokenkeeper.RefreshResult {
	now := r.now()
	if c.GrantType != tokenkeeper.GrantRefreshToken || c.Status != tokenkeeper.StatusActive ||
		c.Token == nil || c.Token.AccessToken == "" || c.APIBaseURL == "" || c.Preset == "" || c.NextRefreshAt.After(now) {
		return nil
	}
	prof, err := r.cfg.Profiles(c.Preset)
	if err != nil || prof.Check == nil {
		return nil
	}
	ka := r.keepAlive(c)
	if ka <= 0 || c.Token.ExpiresAt.Sub(now) <= ka {
		return nil
	}
	start := r.now()
	cctx, cancel := context.WithTimeout(ctx, r.cfg.ProviderTimeout)
	defer cancel()
	ok, why := r.check(cctx, c, prof.Check)
	done := r.now()
	if !ok {
		r.logger.Info("token check failed; refreshing", "credential", c.Name, "reason", why)
		return nil
	}
	t := *c.Token
	return &tokenkeeper.RefreshResult{
		Token: &t, Status: tokenkeeper.StatusActive, LastRefreshAt: done,
		NextRefreshAt: r.schedule(c, &t, done),
		Event: &tokenkeeper.Event{
			CredentialID: c.ID, CredentialName: c.Name, Time: done, Kind: tokenkeeper.EventRefresh,
			Latency: done.Sub(start), Actor: "refresher:" + r.cfg.Owner, Outcome: tokenkeeper.OutcomeOK,
			Message: "keep-alive: the API still takes the access token (" + prof.Check.Path + "); no refresh needed",
		},
	}
}

// check calls ck with c's access token, presented as c's provider says,
// and reports whether the API took it, or why not (never the token).
func (r *Refresher) check(ctx context.Context, c *tokenkeeper.Credential, ck *catalog.Check) (bool, string) {
	u, err := url.Parse(strings.TrimSuffix(c.APIBaseURL, "/") + ck.Path)
	if err != nil {
		return false, "bad check URL"
	}
	how := c.APIToken.Normalized()
	if how.Query != "" {
		q := u.Query()
		q.Set(how.Query, c.Token.AccessToken)
		u.RawQuery = q.Encode()
	}
	method := ck.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return false, "bad check request"
	}
	for k, v := range ck.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept", "application/json")
	if how.Query == "" {
		v := c.Token.AccessToken
		if how.Scheme != "" {
			v = how.Scheme + " " + v
		}
		req.Header.Set(how.Header, v)
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return false, "the API could not be reached"
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxCheckBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return false, "HTTP " + resp.Status
	}
	if ck.OKMember == "" {
		return true, ""
	}
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return false, "the answer is not a JSON object"
	}
	var cur any = m
	for _, seg := range strings.Split(ck.OKMember, ".") {
		obj, _ := cur.(map[string]any)
		cur = obj[seg]
	}
	if cur != true {
		return false, ck.OKMember + " is not true"
	}
	return true, ""
}
