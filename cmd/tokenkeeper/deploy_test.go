package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// metricNameRE finds metric names in PromQL: ours and the Go runtime's and
// process's.
var metricNameRE = regexp.MustCompile(`\b((?:tokenkeeper|go|process)_[a-z0-9_]+)\b`)

// TestDeployFilesNameExistingMetrics: every metric the alerting rules and
// the Grafana dashboard use exists on /metrics of a running broker, so
// that neither rots when a metric is renamed.
func TestDeployFilesNameExistingMetrics(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join("..", "..", "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	dash, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "tokenkeeper.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	// The rules' expressions: "expr:" values, inline or as a block.
	var ruleExprs int
	lines := strings.Split(string(rules), "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "expr:") {
			continue
		}
		ruleExprs++
		e := strings.TrimSpace(strings.TrimPrefix(l, "expr:"))
		if e == "|" || e == ">-" {
			indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
			for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent) {
				i++
				e += " " + strings.TrimSpace(lines[i])
			}
		}
		exprs = append(exprs, e)
	}
	if ruleExprs < 5 || len(d.Panels) < 10 {
		t.Fatalf("found %d rules and %d panels: the files were not read as expected", ruleExprs, len(d.Panels))
	}
	for _, want := range []string{"needs_reauth", "tokenkeeper_refresh_attempts_total", "tokenkeeper_token_lowest_remaining_seconds", "tokenkeeper_store_up", "tokenkeeper_webhook_deliveries_total"} {
		if !strings.Contains(string(rules), want) {
			t.Errorf("the alerting rules do not cover %s", want)
		}
	}
	names := map[string]bool{}
	for _, e := range exprs {
		for _, m := range metricNameRE.FindAllStringSubmatch(e, -1) {
			names[m[1]] = true
		}
	}

	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"), "--metrics-addr", "127.0.0.1:0")
	murl := waitFor(t, "the metrics URL", 5*time.Second, func() string {
		if m := metricsURLRE.FindStringSubmatch(sb.stderr.String()); m != nil {
			return m[1]
		}
		return ""
	})
	text := scrape(t, murl)
	var missing []string
	for n := range names {
		base := n
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b := strings.TrimSuffix(n, suffix); b != n && strings.Contains(text, "# TYPE "+b+" histogram") {
				base = b
			}
		}
		if !strings.Contains(text, "# TYPE "+base+" ") || (base == n && !regexp.MustCompile(`(?m)^`+n+`[{ ]`).MatchString(text)) {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("named in deploy/ but not on /metrics: %v", missing)
	}
	t.Logf("%d metric names in %d expressions, all on /metrics", len(names), len(exprs))
}
