package oauthtest

import (
	"maps"
	"time"
)

// Stats counts what the server has seen since it started.
type Stats struct {
	TokenRequests    map[string]int // token requests by grant_type as sent ("" when missing), faulted ones included
	ReuseDetections  int            // retired refresh token presented outside the grace period
	GraceReuses      int            // retired refresh token presented within the grace period (accepted)
	ResourceRequests int
	ResourceRejected int // 401s from the resource endpoint
	FamiliesRevoked  int // families revoked for any reason: reuse, code reuse, revocation

	FamiliesStarted     int // by IssueRefreshToken and authorization_code grants
	AccessTokensIssued  int
	RefreshTokensIssued int // including the first token of each family
	CodesIssued         int // authorization codes issued by /authorize
	CodeReuses          int // authorization codes presented again after a successful redemption
	Revocations         int // requests to the revocation endpoint
	Faults              int // scripted faults served
	StoredAccessTokens  int // access token records held now (live, and expired less than a minute ago)
	// AccessTokensRevokedByRefresh counts access tokens revoked, while
	// still valid, because a newer one was issued for their grant
	// (WithRevokePrevious).
	AccessTokensRevokedByRefresh int

	ConsentApprovals  int // consent pages answered Approve
	ConsentDenials    int // consent pages answered Deny
	DeviceCodesIssued int // by the device authorization endpoint
	SlowDowns         int // device code polls answered slow_down
	IDTokensIssued    int

	// LostRefreshTokens counts refresh tokens never presented before their
	// family moved past them: superseded because an older token was reused
	// within the grace period, or current when reuse detection revoked the
	// family. A client presenting an older token evidently lacks the newer
	// one, so each count is a token some client received and lost,
	// typically by dying between the server's answer and its own commit.
	LostRefreshTokens int
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.TokenRequests = maps.Clone(s.stats.TokenRequests)
	st.StoredAccessTokens = len(s.access)
	return st
}

// Presentations returns how many times refreshToken was presented in a
// refresh_token grant that reached the grant logic: requests answered with
// a scripted error fault, dropped during latency or failing client
// authentication are not counted; every other presentation is, whatever its
// outcome.
func (s *Server) Presentations(refreshToken string) int {
	h := hashOf(refreshToken)
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.refresh[h]; r != nil {
		return r.presentations
	}
	return 0
}

// MaxPresentations returns the largest Presentations count over all refresh
// tokens. With rotation and a correct client, it is 1.
func (s *Server) MaxPresentations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxPresent
}

// RefreshTokenInfo describes a refresh token, for tests and benchmarks that
// compare what a client stored with what the server issued.
type RefreshTokenInfo struct {
	ClientID string
	Scope    string
	Family   string // family id, such as "fam-12"; not a secret

	// Generation is 1 for the token that started the family and grows by
	// one with each rotation; FamilyGeneration is the generation of the
	// newest token in the family. A stored token that is not Current
	// although its family was never revoked means a rotated token was lost
	// between the server's answer and the client's commit.
	Generation       int
	FamilyGeneration int
	Current          bool      // the token a refresh is expected to present
	RetiredAt        time.Time // when it was rotated away; zero if not
	Revoked          bool      // its family was revoked
	Expired          bool      // past its refresh lifetime (WithRefreshLifetime)
	Presentations    int
}

// RefreshTokenInfo returns what the server knows of a refresh token, and
// false if it never issued it.
func (s *Server) RefreshTokenInfo(token string) (RefreshTokenInfo, bool) {
	h := hashOf(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.refresh[h]
	if r == nil {
		return RefreshTokenInfo{}, false
	}
	f := r.family
	return RefreshTokenInfo{
		ClientID:         f.client.id,
		Scope:            f.scope,
		Family:           f.id,
		Generation:       r.generation,
		FamilyGeneration: f.generation,
		Current:          f.current == r,
		RetiredAt:        r.retiredAt,
		Revoked:          f.revoked,
		Expired:          !r.expiresAt.IsZero() && !s.cfg.now().Before(r.expiresAt),
		Presentations:    r.presentations,
	}, true
}

// AccessTokenInfo describes an access token.
type AccessTokenInfo struct {
	ClientID  string
	Scope     string
	Family    string // "" for client_credentials tokens
	ExpiresAt time.Time
	Expired   bool // by the server's clock
	Revoked   bool // alone, with its family or with its client
}

// AccessTokenInfo returns what the server knows of an access token, and
// false if it never issued it or pruned it (a minute after it expired).
func (s *Server) AccessTokenInfo(token string) (AccessTokenInfo, bool) {
	h := hashOf(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.access[h]
	if a == nil {
		return AccessTokenInfo{}, false
	}
	info := AccessTokenInfo{
		ClientID:  a.client.id,
		Scope:     a.scope,
		ExpiresAt: a.expiresAt,
		Expired:   !s.cfg.now().Before(a.expiresAt),
		Revoked:   a.revokedNow(),
	}
	if a.family != nil {
		info.Family = a.family.id
	}
	return info, true
}
