package bench

import (
	"syscall"
	"testing"
	"time"
)

func TestChaosConfigLead(t *testing.T) {
	for _, tc := range []struct {
		lifetime, providerTimeout, lead time.Duration
		wantLead, wantLease             time.Duration
		wantCovers                      bool
	}{
		// lease 7s + leeway 2s + 2s
		{20 * time.Second, 2 * time.Second, 0, 11 * time.Second, 7 * time.Second, true},
		// lease 8s + leeway 2s + 2s
		{20 * time.Second, 3 * time.Second, 0, 12 * time.Second, 8 * time.Second, true},
		// lease 7s + leeway 5s (capped) + 2s
		{2 * time.Minute, 2 * time.Second, 0, 14 * time.Second, 7 * time.Second, true},
		// too short a lifetime: half of it, and a kill may let tokens run out
		{5 * time.Second, 2 * time.Second, 0, 2500 * time.Millisecond, 7 * time.Second, false},
		// an explicit lead is kept
		{20 * time.Second, 2 * time.Second, 15 * time.Second, 15 * time.Second, 7 * time.Second, true},
		{20 * time.Second, 2 * time.Second, 5 * time.Second, 5 * time.Second, 7 * time.Second, false},
	} {
		cfg := ChaosConfig{Database: "postgres://h/db", Binary: "tokenkeeper", Replicas: 3, Credentials: 10, Lifetime: tc.lifetime,
			Duration: time.Minute, ProviderTimeout: tc.providerTimeout, RefreshLead: tc.lead, Consumers: 1, ReadRate: 1, Signal: "KILL"}
		if err := cfg.validate(); err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if cfg.RefreshLead != tc.wantLead || cfg.lease != tc.wantLease || cfg.leadCovers != tc.wantCovers || cfg.signal != syscall.SIGKILL {
			t.Errorf("lifetime %s, timeout %s, lead %s: got lead %s lease %s covers %v", tc.lifetime, tc.providerTimeout, tc.lead,
				cfg.RefreshLead, cfg.lease, cfg.leadCovers)
		}
	}
}

func TestChaosWindows(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	closed := window{from: at(10), to: at(12)}
	open := window{from: at(10)}
	for _, tc := range []struct {
		w    window
		a, b float64
		want bool
	}{
		{closed, 5, 9, false},   // before
		{closed, 9, 10.5, true}, // in flight when it went down
		{closed, 11, 11.5, true},
		{closed, 12.5, 12.6, true}, // within the settling second
		{closed, 13.1, 13.2, false},
		{open, 100, 101, true},
		{open, 1, 2, false},
	} {
		if got := tc.w.overlaps(at(tc.a), at(tc.b), time.Second); got != tc.want {
			t.Errorf("%+v overlaps [%v, %v] = %v, want %v", tc.w, tc.a, tc.b, got, tc.want)
		}
	}
	var o outages
	o.open(&o.db, at(1))
	o.close(&o.db, at(2))
	o.close(&o.db, at(3)) // a second close changes nothing
	if len(o.db) != 1 || !o.db[0].to.Equal(at(2)) {
		t.Errorf("windows %+v", o.db)
	}
}
