package client

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// L7: a redirect to another host never carries the token; one to the
// same host, or to a listed host, does.
func TestTransportDropsTokenOnCrossHostRedirect(t *testing.T) {
	other := newResource("at-1")
	otherSrv := serve(t, other)
	same := newResource("at-1")
	mux := http.NewServeMux()
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, otherSrv.URL+"/landing", http.StatusFound)
	})
	mux.HandleFunc("/here", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/landing", http.StatusFound)
	})
	mux.Handle("/landing", same)
	origin := serve(t, mux)

	src, _ := countingSource(t)
	get := func(tr *Transport, url string) {
		t.Helper()
		resp, err := (&http.Client{Transport: tr}).Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get(&Transport{Source: src}, origin.URL+"/away")
	if auths, _ := other.requests(); len(auths) != 1 || auths[0] != "" {
		t.Fatalf("the other host got Authorization %q, want none", auths)
	}
	get(&Transport{Source: src}, origin.URL+"/here")
	if auths, _ := same.requests(); len(auths) != 1 || auths[0] != "Bearer at-1" {
		t.Fatalf("a same-host redirect got Authorization %q, want the token", auths)
	}
	host := strings.TrimPrefix(otherSrv.URL, "http://")
	get(&Transport{Source: src, AllowedHosts: []string{host}}, origin.URL+"/away")
	if auths, _ := other.requests(); len(auths) != 2 || auths[1] != "Bearer at-1" {
		t.Fatalf("a listed host got Authorization %q, want the token", auths)
	}
	// With a list, an unlisted host gets no token, even first hand.
	get(&Transport{Source: src, AllowedHosts: []string{"api.example.com"}}, otherSrv.URL+"/direct")
	if auths, _ := other.requests(); len(auths) != 3 || auths[2] != "" {
		t.Fatalf("an unlisted host got Authorization %q, want none", auths)
	}
}
