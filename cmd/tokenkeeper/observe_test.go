package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogFormatJSONIsJSONOnly: with --log-format json, everything init,
// migrate and serve write to standard error is JSON, one object a line
// (master-key notice, migrations, the serving line, access log); standard
// output carries only the first admin key.
func TestLogFormatJSONIsJSONOnly(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "tk.db")
	checkJSON := func(what, s string) int {
		t.Helper()
		n := 0
		for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
			if line == "" {
				continue
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(line), &v); err != nil || v["msg"] == nil {
				t.Fatalf("%s wrote a line that is not a JSON log record: %q", what, line)
			}
			n++
		}
		return n
	}
	var out, errb syncBuffer
	if err := run(context.Background(), []string{"tokenkeeper", "init", "--database", db, "--log-format", "json"}, func(string) string { return "" },
		strings.NewReader(""), &out, &errb); err != nil {
		t.Fatalf("init: %v %s", err, errb.String())
	}
	if checkJSON("init", errb.String()) < 2 || !strings.Contains(errb.String(), "Generated a master key") {
		t.Fatalf("init logs: %s", errb.String())
	}
	if !keyRE.MatchString(out.String()) || strings.Contains(out.String(), "{") {
		t.Fatalf("init's standard output: %s", out.String())
	}
	out, errb = syncBuffer{}, syncBuffer{}
	if err := run(context.Background(), []string{"tokenkeeper", "migrate", "--database", db, "--log-format", "json"}, func(string) string { return "" },
		strings.NewReader(""), &out, &errb); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if checkJSON("migrate", errb.String()) != 1 || out.String() != "" {
		t.Fatalf("migrate: %q / %q", out.String(), errb.String())
	}

	sb := startServe(t, nil, "--database", filepath.Join(dir, "fresh.db"), "--log-format", "json", "--access-log")
	apiDo(t, "GET", sb.url+"/v1/credentials", sb.key, nil, nil)
	sb.stop(t)
	n := checkJSON("serve", sb.stderr.String())
	if n < 5 || !strings.Contains(sb.stderr.String(), `"route":"GET /v1/credentials"`) {
		t.Fatalf("serve logs (%d lines): %s", n, sb.stderr.String())
	}
	if strings.Contains(sb.stderr.String(), sb.key) {
		t.Fatal("the admin key appears in the logs")
	}
	stdout := strings.TrimSpace(sb.stdout.String())
	if !strings.HasPrefix(stdout, "Created the first admin API key") || strings.Count(stdout, sb.key) != 2 || strings.Contains(stdout, "{") {
		t.Fatalf("serve's standard output: %q", stdout)
	}
}
