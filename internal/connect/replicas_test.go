package connect_test

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/connect"
	"github.com/tokenkeeper/tokenkeeper/internal/sqlite"
	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// TestDevicePollingTwoReplicas: two connect services on one database both
// follow a pending device session (the second resumes it at start); the
// poll lease lets one poll at a time, so the provider sees no polling
// faster than its interval, and the grant is stored once.
func TestDevicePollingTwoReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("polls at the provider's 1 s interval for a few seconds")
	}
	idp := oauthtest.NewServer(oauthtest.WithClient("app", "app-secret"), oauthtest.WithDeviceInterval(time.Second))
	defer idp.Close()
	key := make([]byte, 32)
	rand.Read(key)
	path := filepath.Join(t.TempDir(), "tk.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var services []*connect.Service
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var first *sqlite.DB
	for i := 0; i < 2; i++ {
		db, err := sqlite.Open(ctx, path, key)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if i == 0 {
			first = db
		}
		svc, err := connect.New(connect.Config{Store: db, PublicURL: "http://127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		services = append(services, svc)
	}
	if err := first.CreateProvider(ctx, &tokenkeeper.Provider{Name: "idp", TokenURL: idp.TokenURL(),
		DeviceAuthorizationURL: idp.DeviceAuthorizationURL(), ClientID: "app", ClientSecret: "app-secret",
		AuthStyle: tokenkeeper.AuthStyleHeader, Scopes: []string{"read"}}); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); services[0].Run(ctx) }()
	d, err := services[0].StartDevice(ctx, connect.StartRequest{Provider: "idp", Name: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); services[1].Run(ctx) }() // resumes the session at start
	time.Sleep(2500 * time.Millisecond)
	if err := idp.ApproveDevice(d.UserCode); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		cs, err := first.ConnectSession(ctx, d.Session.ID)
		if err != nil {
			t.Fatal(err)
		}
		if cs.Status != tokenkeeper.ConnectPending {
			if cs.Status != tokenkeeper.ConnectConnected {
				t.Fatalf("session ended %s: %s", cs.Status, cs.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the session did not end")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := idp.Stats(); st.SlowDowns != 0 || st.FamiliesStarted != 1 {
		t.Fatalf("slow_down answers %d, grants %d", st.SlowDowns, st.FamiliesStarted)
	}
}
