package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The demo prints no path it deletes; with --keep it keeps its directory
// and says where it is. Its tokens live 10 s: the test is about files, and
// 2 s tokens made a consumer of the demo fail on a loaded machine.
func TestDemoKeep(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	out, errs, err := runCmd(t, "demo", "--duration", "3s", "--lifetime", "10s")
	if err != nil {
		t.Fatalf("demo: %v\n%s%s", err, out, errs)
	}
	if strings.Contains(out, tmp) || strings.Contains(out, "tokenkeeper-demo-") {
		t.Fatalf("the demo printed a path it deletes:\n%s", out)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("the demo left %d entries in the temporary directory", len(left))
	}

	out, errs, err = runCmd(t, "demo", "--duration", "3s", "--lifetime", "10s", "--keep")
	if err != nil {
		t.Fatalf("demo --keep: %v\n%s%s", err, out, errs)
	}
	m := regexp.MustCompile(`Kept the database, its master key and the broker log in (\S+) `).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("demo --keep does not say where it kept its files:\n%s", out)
	}
	for _, f := range []string{"tokenkeeper.db", "tokenkeeper.db.key", "broker.log"} {
		if _, err := os.Stat(filepath.Join(m[1], f)); err != nil {
			t.Errorf("demo --keep did not keep %s: %v", f, err)
		}
	}
}

// TestDemoReconnect runs the demo unattended: the credential whose grant
// the provider revokes is repaired through the reconnect link the demo
// prints, followed by itself (--auto-approve).
func TestDemoReconnect(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs for 14 seconds")
	}
	var out, errb syncBuffer
	err := run(context.Background(), []string{"tokenkeeper", "demo", "--duration", "14s", "--lifetime", "5s", "--revoke-after", "3s", "--auto-approve"},
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
