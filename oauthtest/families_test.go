package oauthtest

import (
	"strconv"
	"testing"
	"time"
)

// TestFamilies follows the refresh tokens a client lost: a client that keeps
// only its first token and presents it again (as one that died before saving
// the answer would) leaves every token issued meanwhile unpresented.
func TestFamilies(t *testing.T) {
	clock := newFakeClock()
	s := NewServer(WithClient("c", "s"), WithClient("other", "x"), WithRotation(true),
		WithReuseDetection(30*time.Second), WithNow(clock.Now))
	defer s.Close()
	if got := s.Families(); len(got) != 0 {
		t.Fatalf("Families of a new server = %+v", got)
	}

	// Family 1: a careful client. It holds its newest token, unpresented.
	careful := s.IssueRefreshToken("c", "")
	for range 3 {
		careful = mustRefresh(t, s, "c", "s", careful).str("refresh_token")
	}
	// Family 2: the answer to rt1's first refresh is lost; rt1 is presented
	// again within the grace period, and the answer to that is lost too.
	rt1 := s.IssueRefreshToken("c", "")
	mustRefresh(t, s, "c", "s", rt1)
	clock.Advance(time.Second)
	mustRefresh(t, s, "c", "s", rt1)
	// Family 3, of another client: rt1 again after the grace period revokes it.
	lost := s.IssueRefreshToken("other", "")
	mustRefresh(t, s, "other", "x", lost)
	clock.Advance(time.Minute)
	wantOAuthError(t, refresh(t, s, "other", "x", lost), 400, "invalid_grant")

	got := s.Families()
	want := []FamilyInfo{
		{ID: "fam-1", ClientID: "c", Generation: 4, Unpresented: 1},
		{ID: "fam-2", ClientID: "c", Generation: 3, Unpresented: 2},
		{ID: "fam-3", ClientID: "other", Generation: 2, Revoked: true, Unpresented: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("Families = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("family %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// What a benchmark computes: tokens issued but never used, besides the
	// one the client holds.
	info, _ := s.RefreshTokenInfo(careful)
	if info.Family != "fam-1" || info.Presentations != 0 || got[0].Unpresented-1 != 0 {
		t.Errorf("careful client: %+v, family %+v", info, got[0])
	}
	info, _ = s.RefreshTokenInfo(rt1)
	if info.Family != "fam-2" || info.Presentations != 2 || got[1].Unpresented != 2 {
		t.Errorf("client that lost two answers: %+v, family %+v", info, got[1])
	}
}

// TestFamiliesOrder checks that families come in the order they started,
// also past fam-9.
func TestFamiliesOrder(t *testing.T) {
	s := NewServer(WithClient("c", "s"))
	defer s.Close()
	for range 12 {
		s.IssueRefreshToken("c", "")
	}
	got := s.Families()
	if len(got) != 12 {
		t.Fatalf("%d families, want 12", len(got))
	}
	for i, f := range got {
		if want := "fam-" + strconv.Itoa(i+1); f.ID != want || f.Generation != 1 || f.Unpresented != 1 {
			t.Errorf("family %d = %+v, want %s with one unpresented token", i, f, want)
		}
	}
}
