package http

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Defaults for forced refreshes (POST /v1/credentials/{name}/refresh).
const (
	// DefaultForcedRefreshFloor: a forced refresh without rejected_token
	// does nothing when the last successful refresh is younger than this.
	DefaultForcedRefreshFloor = 10 * time.Second
	// DefaultForcedRefreshLimit and DefaultForcedRefreshBurst bound the
	// refresh requests of one caller: 12 a minute, 6 at once.
	DefaultForcedRefreshLimit = 12
	DefaultForcedRefreshBurst = 6
)

// RefreshSkippedHeader is set on the answer to a forced refresh that was
// not made because the current token is younger than the floor; the
// answer carries the current token.
const RefreshSkippedHeader = "Tokenkeeper-Refresh-Skipped"

// forcedRefreshGate runs before a forced refresh reaches the refresher. It
// answers the request itself, and returns true:
//   - when no rejected token is reported and the credential's last
//     successful refresh is younger than the floor: with the current token,
//     and RefreshSkippedHeader saying why;
//   - when the caller has made too many requests that could reach the
//     provider (429 with Retry-After). A rejected token counts once per
//     caller however often it is reported, since the refresher answers a
//     report of a token that is no longer current without a provider call.
//
// Otherwise it returns false and the refresh goes ahead.
func (s *server) forcedRefreshGate(w http.ResponseWriter, r *http.Request, name, rejected string) bool {
	now := s.now()
	who := actor(r)
	if rejected == "" && s.forceFloor > 0 {
		if c, err := s.store.Credential(r.Context(), name); err == nil {
			age := now.Sub(c.LastRefreshAt)
			if c.Status == tokenkeeper.StatusActive && !c.LastRefreshAt.IsZero() && age >= 0 && age < s.forceFloor && c.Token.Valid(now, time.Second) {
				w.Header().Set(RefreshSkippedHeader, fmt.Sprintf("the last successful refresh was %s ago, less than the floor of %s: this is the current token", age.Round(time.Second), s.forceFloor))
				// Answer as a read does: with the advertised expiry, never a
				// token about to be replaced.
				if sv, err := s.refresher.Token(r.Context(), name, 0); err == nil {
					s.audit(r, who, "credential.refresh", name, "skipped", "younger than the floor")
					s.writeToken(w, sv.Token, sv.ExpiresAt, s.now())
					return true
				}
			}
		}
	}
	var seenKey string
	if rejected != "" {
		h := sha256.Sum256([]byte(rejected))
		seenKey = who + "\x00" + name + "\x00" + string(h[:])
		if s.reported.seen(seenKey, now) {
			return false
		}
	}
	ok, wait := s.forceRate.allow(who, now)
	if !ok {
		secs := int64((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		s.audit(r, who, "credential.refresh", name, "rate_limited", "")
		writeProblem(w, &Problem{
			Type: ProblemTypePrefix + "too_many_requests", Title: "Too Many Requests", Status: http.StatusTooManyRequests,
			Code: "too_many_requests", Detail: fmt.Sprintf("too many refresh requests from this caller: retry in %d %s", secs, plural(int(secs), "second", "seconds")),
		})
		return true
	}
	if seenKey != "" {
		s.reported.add(seenKey, now)
	}
	return false
}

// reportedTokens remembers, for a minute, which rejected tokens each caller
// has reported (as SHA-256, never the token). Safe for concurrent use;
// bounded.
type reportedTokens struct {
	mu sync.Mutex
	m  map[string]time.Time // guarded by mu
}

func (t *reportedTokens) seen(key string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.m[key]
	return ok && now.Sub(at) < time.Minute
}

func (t *reportedTokens) add(key string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil || len(t.m) >= 10_000 {
		t.m = map[string]time.Time{}
	}
	t.m[key] = now
}
