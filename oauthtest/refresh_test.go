package oauthtest

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRefreshWithoutRotation(t *testing.T) {
	s := NewServer(WithClient("c", "s"), WithReuseDetection(0))
	defer s.Close()
	rt := s.IssueRefreshToken("c", "read write")

	var prev string
	for i := 1; i <= 3; i++ {
		r := mustRefresh(t, s, "c", "s", rt)
		if _, ok := r.json["refresh_token"]; ok {
			t.Fatalf("refresh %d: response has a refresh_token without rotation", i)
		}
		at := r.str("access_token")
		if at == "" || at == prev || r.str("scope") != "read write" {
			t.Fatalf("refresh %d: body %s", i, r.raw)
		}
		prev = at
		if got := s.Presentations(rt); got != i {
			t.Errorf("Presentations = %d, want %d", got, i)
		}
	}
	st := s.Stats()
	if st.ReuseDetections != 0 || st.FamiliesRevoked != 0 || s.MaxPresentations() != 3 {
		t.Errorf("stats %+v, max presentations %d", st, s.MaxPresentations())
	}
	if s.Presentations("never issued") != 0 {
		t.Errorf("Presentations of an unknown token is not 0")
	}
}

func TestRotationWithoutReuseDetection(t *testing.T) {
	s := NewServer(WithClient("c", "s"), WithRotation(true))
	defer s.Close()
	rt1 := s.IssueRefreshToken("c", "")

	r := mustRefresh(t, s, "c", "s", rt1)
	rt2 := r.str("refresh_token")
	if rt2 == "" || rt2 == rt1 {
		t.Fatalf("rotation did not issue a new refresh token: %s", r.raw)
	}
	at := r.str("access_token")

	// The retired token is refused, but the family lives on.
	wantOAuthError(t, refresh(t, s, "c", "s", rt1), 400, "invalid_grant")
	if !s.ValidAccessToken(at) {
		t.Errorf("access token revoked without reuse detection")
	}
	rt3 := mustRefresh(t, s, "c", "s", rt2).str("refresh_token")

	info, ok := s.RefreshTokenInfo(rt1)
	if !ok || info.Current || info.Revoked || info.RetiredAt.IsZero() || info.Generation != 1 ||
		info.FamilyGeneration != 3 || info.Presentations != 2 || info.ClientID != "c" {
		t.Errorf("RefreshTokenInfo(rt1) = %+v, %v", info, ok)
	}
	if info, _ := s.RefreshTokenInfo(rt3); !info.Current || info.Generation != 3 || !info.RetiredAt.IsZero() {
		t.Errorf("RefreshTokenInfo(rt3) = %+v", info)
	}
	if _, ok := s.RefreshTokenInfo("nope"); ok {
		t.Errorf("RefreshTokenInfo knows an unknown token")
	}
	if st := s.Stats(); st.ReuseDetections != 0 || st.FamiliesRevoked != 0 || st.RefreshTokensIssued != 3 {
		t.Errorf("stats = %+v", st)
	}
	if s.MaxPresentations() != 2 {
		t.Errorf("MaxPresentations = %d, want 2", s.MaxPresentations())
	}
}

func TestReuseDetectionStrict(t *testing.T) {
	s := NewServer(WithClient("c", "s"), WithRotation(true), WithReuseDetection(0))
	defer s.Close()
	rt1 := s.IssueRefreshToken("c", "")
	bystander := s.IssueRefreshToken("c", "")
	br := mustRefresh(t, s, "c", "s", bystander)
	bystander, bystanderAT := br.str("refresh_token"), br.str("access_token")

	r := mustRefresh(t, s, "c", "s", rt1)
	rt2, at2 := r.str("refresh_token"), r.str("access_token")
	r = mustRefresh(t, s, "c", "s", rt2)
	rt3, at3 := r.str("refresh_token"), r.str("access_token")

	// Presenting rt1 again revokes the whole family.
	wantOAuthError(t, refresh(t, s, "c", "s", rt1), 400, "invalid_grant")
	for _, at := range []string{at2, at3} {
		if s.ValidAccessToken(at) {
			t.Errorf("an access token of the revoked family is still valid")
		}
		if res := getResource(t, s, at); res.status != http.StatusUnauthorized {
			t.Errorf("resource accepts a token of the revoked family: %d", res.status)
		}
	}
	wantOAuthError(t, refresh(t, s, "c", "s", rt3), 400, "invalid_grant")
	if info, _ := s.RefreshTokenInfo(rt3); !info.Revoked {
		t.Errorf("current token of the revoked family: %+v", info)
	}
	if info, _ := s.AccessTokenInfo(at3); !info.Revoked || info.Family == "" {
		t.Errorf("AccessTokenInfo of a revoked family's token = %+v", info)
	}

	// Presenting a rotated token of the revoked family counts again as a
	// reuse, but the family is revoked once.
	wantOAuthError(t, refresh(t, s, "c", "s", rt2), 400, "invalid_grant")
	st := s.Stats()
	if st.ReuseDetections != 2 || st.FamiliesRevoked != 1 || st.GraceReuses != 0 || st.LostRefreshTokens != 1 {
		t.Errorf("stats = %+v", st)
	}

	// Another family of the same client is untouched.
	if !s.ValidAccessToken(bystanderAT) {
		t.Errorf("reuse detection revoked another family")
	}
	mustRefresh(t, s, "c", "s", bystander)
}

func TestReuseDetectionGrace(t *testing.T) {
	clock := newFakeClock()
	s := NewServer(WithClient("c", "s"), WithRotation(true), WithReuseDetection(30*time.Second), WithNow(clock.Now))
	defer s.Close()
	rt1 := s.IssueRefreshToken("c", "")

	r := mustRefresh(t, s, "c", "s", rt1) // rt1 retired now
	rt2 := r.str("refresh_token")

	// Within the grace period, rt1 is accepted once more and a new token
	// issued; rt2 is retired in its turn.
	clock.Advance(30 * time.Second) // the boundary is inside the grace
	r = mustRefresh(t, s, "c", "s", rt1)
	rt2b := r.str("refresh_token")
	if rt2b == "" || rt2b == rt2 || !s.ValidAccessToken(r.str("access_token")) {
		t.Fatalf("grace reuse: %s", r.raw)
	}
	if st := s.Stats(); st.GraceReuses != 1 || st.ReuseDetections != 0 {
		t.Fatalf("after grace reuse: %+v", st)
	}
	if info, _ := s.RefreshTokenInfo(rt2); info.Current || info.RetiredAt != clock.Now() {
		t.Errorf("rt2 after the grace reuse: %+v", info)
	}

	// rt2 was retired at the grace reuse, so it has its own grace window.
	clock.Advance(10 * time.Second)
	rt3 := mustRefresh(t, s, "c", "s", rt2).str("refresh_token")

	// Past rt1's grace (40 s after its retirement), presenting it revokes
	// the family.
	wantOAuthError(t, refresh(t, s, "c", "s", rt1), 400, "invalid_grant")
	wantOAuthError(t, refresh(t, s, "c", "s", rt3), 400, "invalid_grant")
	st := s.Stats()
	// Never presented: rt2 before rt1's grace reuse superseded it, rt2b
	// before rt2's, and rt3 before the family was revoked.
	if st.GraceReuses != 2 || st.ReuseDetections != 1 || st.FamiliesRevoked != 1 || st.LostRefreshTokens != 3 {
		t.Errorf("stats = %+v", st)
	}
	if s.Presentations(rt1) != 3 {
		t.Errorf("Presentations(rt1) = %d, want 3", s.Presentations(rt1))
	}
}

func TestReuseDetectionGraceOnRevokedFamily(t *testing.T) {
	clock := newFakeClock()
	s := NewServer(WithClient("c", "s"), WithRotation(true), WithReuseDetection(time.Minute), WithNow(clock.Now))
	defer s.Close()
	rt1 := s.IssueRefreshToken("c", "")
	mustRefresh(t, s, "c", "s", rt1)
	s.RevokeToken(rt1)
	// Within grace, but the family is revoked: no new tokens.
	wantOAuthError(t, refresh(t, s, "c", "s", rt1), 400, "invalid_grant")
	if st := s.Stats(); st.GraceReuses != 0 || st.FamiliesRevoked != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRefreshRules(t *testing.T) {
	clock := newFakeClock()
	s := NewServer(WithClient("a", "sa"), WithClient("b", "sb"), WithRefreshLifetime(time.Hour),
		WithRotation(true), WithNow(clock.Now))
	defer s.Close()

	// A narrower scope is granted; a wider one is refused.
	rt := s.IssueRefreshToken("a", "read write")
	r := postForm(t, s.TokenURL(), url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"read"},
	}, &basicCreds{"a", "sa"})
	if r.status != 200 || r.str("scope") != "read" {
		t.Fatalf("narrower scope: %d %s", r.status, r.raw)
	}
	rt = r.str("refresh_token")
	wantOAuthError(t, postForm(t, s.TokenURL(), url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"read admin"},
	}, &basicCreds{"a", "sa"}), 400, "invalid_scope")
	// The family keeps its original scope.
	if got := mustRefresh(t, s, "a", "sa", rt).str("scope"); got != "read write" {
		t.Errorf("scope after narrowing once = %q", got)
	}

	// Another client's refresh token.
	other := s.IssueRefreshToken("b", "")
	wantOAuthError(t, refresh(t, s, "a", "sa", other), 400, "invalid_grant")
	mustRefresh(t, s, "b", "sb", other)

	// An unknown refresh token.
	wantOAuthError(t, refresh(t, s, "a", "sa", "ort_unknown"), 400, "invalid_grant")

	// Refresh token lifetime: counted from each token's issuance.
	old := s.IssueRefreshToken("a", "")
	clock.Advance(59 * time.Minute)
	fresh := mustRefresh(t, s, "a", "sa", old).str("refresh_token")
	clock.Advance(time.Minute)
	if info, _ := s.RefreshTokenInfo(fresh); info.Expired {
		t.Errorf("a rotated token expired with its predecessor")
	}
	expiring := s.IssueRefreshToken("a", "")
	clock.Advance(time.Hour)
	wantOAuthError(t, refresh(t, s, "a", "sa", expiring), 400, "invalid_grant")
	if info, _ := s.RefreshTokenInfo(expiring); !info.Expired || info.Revoked {
		t.Errorf("expired token info = %+v", info)
	}
	if st := s.Stats(); st.FamiliesRevoked != 0 || st.ReuseDetections != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestIssueRefreshTokenUnknownClientPanics(t *testing.T) {
	s := NewHandler()
	defer func() {
		if recover() == nil {
			t.Errorf("no panic")
		}
	}()
	s.IssueRefreshToken("nobody", "")
}

// TestConcurrentFamilies drives many families in parallel, each refreshed
// in sequence by its own goroutine, as a correct client does: with strict
// reuse detection, nothing is ever detected and every token is presented
// once.
func TestConcurrentFamilies(t *testing.T) {
	const families, rounds = 64, 8
	s := NewServer(WithClient("c", "s"), WithRotation(true), WithReuseDetection(0), WithLifetime(time.Minute))
	defer s.Close()
	var wg sync.WaitGroup
	errs := make(chan error, families)
	for i := 0; i < families; i++ {
		rt := s.IssueRefreshToken("c", fmt.Sprintf("f%d", i))
		wg.Go(func() {
			for range rounds {
				r := refresh(t, s, "c", "s", rt)
				if r.status != http.StatusOK {
					errs <- fmt.Errorf("status %d: %s", r.status, r.raw)
					return
				}
				if res := getResource(t, s, r.str("access_token")); res.status != http.StatusOK {
					errs <- fmt.Errorf("resource status %d", res.status)
					return
				}
				rt = r.str("refresh_token")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := s.Stats()
	if st.ReuseDetections != 0 || st.FamiliesRevoked != 0 || st.LostRefreshTokens != 0 || s.MaxPresentations() != 1 {
		t.Errorf("stats %+v, max presentations %d", st, s.MaxPresentations())
	}
	if st.TokenRequests["refresh_token"] != families*rounds || st.RefreshTokensIssued != families*(rounds+1) {
		t.Errorf("stats = %+v", st)
	}
}

// TestConcurrentPresentationsOfOneToken races many requests presenting the
// same refresh token: exactly one wins the rotation.
func TestConcurrentPresentationsOfOneToken(t *testing.T) {
	const racers = 32
	for _, detect := range []bool{false, true} {
		t.Run(fmt.Sprintf("reuse_detection=%v", detect), func(t *testing.T) {
			opts := []Option{WithClient("c", "s"), WithRotation(true)}
			if detect {
				opts = append(opts, WithReuseDetection(0))
			}
			s := NewServer(opts...)
			defer s.Close()
			rt := s.IssueRefreshToken("c", "")
			var ok, grantErr atomic.Int32
			var winner atomic.Value
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range racers {
				wg.Go(func() {
					<-start
					r := refresh(t, s, "c", "s", rt)
					switch {
					case r.status == 200:
						ok.Add(1)
						winner.Store(r.str("refresh_token"))
					case r.str("error") == "invalid_grant":
						grantErr.Add(1)
					default:
						t.Errorf("unexpected answer %d %s", r.status, r.raw)
					}
				})
			}
			close(start)
			wg.Wait()
			if ok.Load() != 1 || grantErr.Load() != racers-1 {
				t.Fatalf("%d successes, %d invalid_grant", ok.Load(), grantErr.Load())
			}
			if s.Presentations(rt) != racers || s.MaxPresentations() != racers {
				t.Errorf("Presentations = %d, MaxPresentations = %d", s.Presentations(rt), s.MaxPresentations())
			}
			st := s.Stats()
			next := winner.Load().(string)
			if detect {
				if st.ReuseDetections != racers-1 || st.FamiliesRevoked != 1 {
					t.Errorf("stats = %+v", st)
				}
				wantOAuthError(t, refresh(t, s, "c", "s", next), 400, "invalid_grant")
			} else {
				if st.ReuseDetections != 0 || st.FamiliesRevoked != 0 {
					t.Errorf("stats = %+v", st)
				}
				mustRefresh(t, s, "c", "s", next)
			}
		})
	}
}

// TestConcurrentAdminCalls runs every method while requests are served, for
// the race detector.
func TestConcurrentAdminCalls(t *testing.T) {
	s := NewServer(WithClient("c", "s"), WithClient("pub", ""), WithRotation(true), WithReuseDetection(time.Second))
	defer s.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.AddClient("pub", "")
			s.AddClient(fmt.Sprintf("x%d", i%5), "y")
			rt := s.IssueRefreshToken("c", "")
			s.Presentations(rt)
			s.RefreshTokenInfo(rt)
			s.MaxPresentations()
			s.Stats()
			s.Script(Fault{Kind: FaultMissingExpiresIn})
			if i%7 == 0 {
				s.ClearScript()
				s.RevokeClientTokens("x1")
			}
			if i%50 == 0 {
				s.RevokeAll()
			}
		}
	})
	var workers sync.WaitGroup
	for range 4 {
		workers.Go(func() {
			for range 20 {
				at := clientCredentials(t, s, "c", "s")
				s.ValidAccessToken(at)
				s.AccessTokenInfo(at)
				getResource(t, s, at)
				authorizeCode(t, s, "pub", "", s256(testVerifier))
				s.RevokeToken(at)
			}
		})
	}
	workers.Wait()
	close(stop)
	wg.Wait()
}
