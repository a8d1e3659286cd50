package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"no samples", nil, 0.5, 0},
		{"one sample, p50", ms(7), 0.5, 7 * time.Millisecond},
		{"one sample, p99", ms(7), 0.99, 7 * time.Millisecond},
		{"p0 is the minimum", ms(1, 2, 3), 0, time.Millisecond},
		{"p100 is the maximum", ms(1, 2, 3), 1, 3 * time.Millisecond},
		{"p50 of an odd count is the median", ms(1, 2, 3), 0.5, 2 * time.Millisecond},
		{"p50 of an even count rounds down", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 0.5, 50 * time.Millisecond},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: percentile(%v) = %s, want %s", tc.name, tc.p, got, tc.want)
		}
	}
}

func TestMillis(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0.0ms"},
		{1500 * time.Microsecond, "1.5ms"},
		{1549 * time.Microsecond, "1.5ms"},
		{1551 * time.Microsecond, "1.6ms"},
		{1999 * time.Nanosecond, "0.0ms"}, // below a microsecond's precision
		{2 * time.Second, "2000.0ms"},
	} {
		if got := ms(tc.d); got != tc.want {
			t.Errorf("ms(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestParsePeakRSS(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want         int64
	}{
		{"present", "Name:\ttokenkeeper\nVmPeak:\t  900 kB\nVmHWM:\t   55320 kB\nVmRSS:\t 40000 kB\n", 55320 << 10},
		{"absent", "Name:\ttokenkeeper\nVmRSS:\t 40000 kB\n", 0},
		{"unparsable", "VmHWM:\tlots\n", 0},
		{"empty", "", 0},
	} {
		if got := parsePeakRSS(bufio.NewScanner(strings.NewReader(tc.status))); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if rss := peakRSS(); rss < 0 {
		t.Errorf("peakRSS() = %d", rss)
	}
}

func TestParseCPUTimes(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       cpuTimes
		ok         bool
	}{
		{"ten fields", "cpu  100 2 30 800 4 0 5 9 7 1\ncpu0 50 1 15 400 2 0 2 4 3 0\n", cpuTimes{total: 950, steal: 9}, true},
		{"old kernel, no guest", "cpu  100 2 30 800 4 0 5 9\n", cpuTimes{total: 950, steal: 9}, true},
		{"no steal field", "cpu  100 2 30 800 4 0 5\n", cpuTimes{}, false},
		{"not the total line", "cpu0 100 2 30 800 4 0 5 9 7 1\n", cpuTimes{}, false},
		{"unparsable", "cpu  100 2 x 800 4 0 5 9 7 1\n", cpuTimes{}, false},
		{"negative", "cpu  100 2 -3 800 4 0 5 9 7 1\n", cpuTimes{}, false},
		{"empty", "", cpuTimes{}, false},
	} {
		got, ok := parseCPUTimes(tc.stat)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %+v %v, want %+v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	a, b := cpuTimes{total: 1000, steal: 10}, cpuTimes{total: 3000, steal: 70}
	if got := stealPct(a, true, b, true); got != 3 {
		t.Errorf("stealPct = %v, want 3", got)
	}
	for _, tc := range []struct {
		name   string
		a, b   cpuTimes
		oa, ob bool
	}{
		{"unknown start", a, b, false, true},
		{"unknown end", a, b, true, false},
		{"no time passed", a, a, true, true},
		{"steal went back", b, cpuTimes{total: 4000, steal: 5}, true, true},
	} {
		if got := stealPct(tc.a, tc.oa, tc.b, tc.ob); got != -1 {
			t.Errorf("%s: stealPct = %v, want -1 (unknown)", tc.name, got)
		}
	}
	if _, ok := readCPUTimes(); !ok && runtime.GOOS == "linux" {
		t.Error("readCPUTimes found no CPU times in /proc/stat on Linux")
	}
}

// TestScaleReportSteal: the text report names the host's steal beside the
// reads it was measured with, and says nothing of it where it is unknown.
func TestScaleReportSteal(t *testing.T) {
	r := &ScaleReport{ReadQuietP99MS: 0.5, ReadLoadedP99MS: 0.9, StealQuietPct: -1, StealLoadedPct: 3.456}
	text := reportText(t, r)
	quiet, loaded := lineWith(text, "token reads, no refresh load"), lineWith(text, "token reads, under load")
	if strings.Contains(quiet, "stole") {
		t.Errorf("unknown steal printed: %q", quiet)
	}
	if !strings.HasSuffix(loaded, "; host stole 3.46% of CPU time meanwhile") || !strings.Contains(loaded, "(1.80× the p99 without)") {
		t.Errorf("loaded reads: %q", loaded)
	}
}

// TestScaleReportBare: the control's lines, with the bare handler's own
// ratio, are printed only when it ran.
func TestScaleReportBare(t *testing.T) {
	r := &ScaleReport{QuietWindow: Duration(15 * time.Second), ReadQuietP99MS: 0.5, ReadLoadedP99MS: 1.5, StealQuietPct: -1, StealLoadedPct: -1}
	if text := reportText(t, r); strings.Contains(text, "bare handler") {
		t.Errorf("the control printed without running:\n%s", text)
	}
	r.Bare = &BareControl{In: "a separate process", BodyBytes: 141, QuietP50MS: 0.2, QuietP99MS: 0.8, LoadedP50MS: 0.3, LoadedP99MS: 1.2,
		StealQuietPct: -1, StealLoadedPct: 1.5}
	text := reportText(t, r)
	quiet, loaded := lineWith(text, "bare handler, no refresh load"), lineWith(text, "bare handler, under load")
	if !strings.Contains(quiet, "p50 0.20ms, p99 0.80ms (the same reads of a bare net/http handler in a separate process answering 141 bytes)") ||
		strings.Contains(quiet, "stole") {
		t.Errorf("bare handler without load: %q", quiet)
	}
	if !strings.Contains(loaded, "p50 0.30ms, p99 1.20ms (1.50× the p99 without; read for 15s after the window, beside the same refresh load), 0 errors") ||
		!strings.HasSuffix(loaded, "; host stole 1.50% of CPU time meanwhile") {
		t.Errorf("bare handler under load: %q", loaded)
	}
}

func TestFormatCounts(t *testing.T) {
	for _, tc := range []struct {
		m    map[string]int
		want string
	}{
		{nil, ""},
		{map[string]int{"active": 200}, "active 200"},
		{map[string]int{"timeout": 1, "connection refused": 3, "http 503": 2}, "connection refused 3, http 503 2, timeout 1"},
	} {
		if got := formatCounts(tc.m); got != tc.want {
			t.Errorf("formatCounts(%v) = %q, want %q", tc.m, got, tc.want)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	for _, d := range []time.Duration{0, 2500 * time.Millisecond, 20 * time.Second, 10 * time.Minute} {
		b, err := json.Marshal(Duration(d))
		if err != nil {
			t.Fatal(err)
		}
		if want := `"` + d.String() + `"`; string(b) != want {
			t.Errorf("marshal %s: %s, want %s", d, b, want)
		}
		var back Duration
		if err := json.Unmarshal(b, &back); err != nil || time.Duration(back) != d {
			t.Errorf("round trip of %s: %s, %v", d, back, err)
		}
	}
	for _, bad := range []string{`"10 parsecs"`, `12`, `null x`} {
		var d Duration
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("unmarshal %s: no error", bad)
		}
	}
}

func TestRandomSecret(t *testing.T) {
	a, b := randomSecret(), randomSecret()
	if len(a) != 32 || a == b || strings.ContainsAny(a, "+/=") {
		t.Errorf("randomSecret() = %q, %q", a, b)
	}
}

// sortedJSON re-encodes v's JSON through a map, whose keys encoding/json
// sorts: the same bytes mean v's keys were already in that order.
func sortedJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTextWriter(t *testing.T) {
	var tw textWriter
	tw.printf("a %d\n", 1)
	tw.printf("b %s\n", "two")
	var buf bytes.Buffer
	if err := tw.flush(&buf); err != nil || buf.String() != "a 1\nb two\n" {
		t.Errorf("%q, %v", buf.String(), err)
	}
}

// reportText returns r's text report.
func reportText(t *testing.T, r *ScaleReport) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// lineWith returns the first line of text that contains key, or "".
func lineWith(text, key string) string {
	for line := range strings.SplitSeq(text, "\n") {
		if strings.Contains(line, key) {
			return line
		}
	}
	return ""
}
