package main

import (
	"context"
	"strings"
	"testing"
)

// TestDemoReconnect runs the demo unattended: the credential whose grant
// the provider revokes is repaired through the reconnect link the demo
// prints, followed by itself (--auto-approve).
func TestDemoReconnect(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs for 10 seconds")
	}
	var out, errb syncBuffer
	err := run(context.Background(), []string{"tokenkeeper", "demo", "--duration", "10s", "--lifetime", "2s", "--revoke-after", "3s", "--auto-approve"},
		func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	s := out.String()
	if err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, s, errb.String())
	}
	for _, want := range []string{"crm needs re-authorization. Open this reconnect link", "/connect/", "crm reconnect session ended: connected", "crm reconnected", "0 refresh-token reuse detections"} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q:\n%s", want, s)
		}
	}
}
