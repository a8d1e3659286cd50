package oauthtest

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// FamilyInfo describes a refresh token family, for benchmarks that compare
// what the server issued with what a client kept. Nothing in it is a secret.
type FamilyInfo struct {
	ID       string // such as "fam-12"
	ClientID string
	// Generation is the generation of the newest refresh token, which is
	// also the number of refresh tokens the family issued: one to start it
	// and one per successful refresh (with rotation).
	Generation int
	Revoked    bool
	// Unpresented counts the family's refresh tokens never presented in a
	// refresh_token grant (as Presentations counts them), the current one
	// included. A client that keeps every token it receives and presents
	// only its latest leaves at most one: the one it holds. Every other
	// unpresented token is a refresh the server answered whose new refresh
	// token the client never used, typically because it died between the
	// answer and saving it.
	Unpresented int
}

// Families returns every refresh token family, in the order they were
// started. It looks at every refresh token ever issued, so it takes time
// proportional to their number: call it once at the end of a run, not in a
// loop.
func (s *Server) Families() []FamilyInfo {
	s.mu.Lock()
	byFamily := make(map[*family]*FamilyInfo)
	for _, r := range s.refresh {
		f := r.family
		fi := byFamily[f]
		if fi == nil {
			fi = &FamilyInfo{ID: f.id, ClientID: f.client.id, Generation: f.generation, Revoked: f.revoked}
			byFamily[f] = fi
		}
		if r.presentations == 0 {
			fi.Unpresented++
		}
	}
	s.mu.Unlock()
	out := make([]FamilyInfo, 0, len(byFamily))
	for _, fi := range byFamily {
		out = append(out, *fi)
	}
	slices.SortFunc(out, func(a, b FamilyInfo) int { return cmp.Compare(familyNumber(a.ID), familyNumber(b.ID)) })
	return out
}

// familyNumber returns N of a family id "fam-N".
func familyNumber(id string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(id, "fam-"))
	return n
}
