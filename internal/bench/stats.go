package bench

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentile returns the p-quantile (0 ≤ p ≤ 1) of sorted, by the
// nearest-rank-below method; 0 for no samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// millis is d in milliseconds, to the microsecond, as the reports hold it.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ms formats d in milliseconds with one decimal: "12.3ms".
func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", millis(d)) }

// peakRSS reads this process's peak resident set size in bytes (Linux; 0
// elsewhere).
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	return parsePeakRSS(bufio.NewScanner(f))
}

// parsePeakRSS finds the VmHWM line of /proc/self/status.
func parsePeakRSS(sc *bufio.Scanner) int64 {
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// formatCounts prints counts by key, sorted by key: "active 3, failed 1".
func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// sum adds the values of m.
func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// randomSecret returns 24 random bytes as URL-safe base64: a per-run secret.
func randomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// textWriter collects a report's lines and writes them at once, so that
// WriteText returns the one error that matters.
type textWriter struct{ b strings.Builder }

func (t *textWriter) printf(format string, args ...any) { fmt.Fprintf(&t.b, format, args...) }

func (t *textWriter) flush(w io.Writer) error {
	_, err := io.WriteString(w, t.b.String())
	return err
}

// resetPeakRSS resets this process's peak resident set size to the
// current one (Linux: clear_refs 5), so that peakRSS measures from now.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// writtenBytes reads the bytes this process caused to be written to
// storage (/proc/self/io write_bytes); -1 where unknown.
func writtenBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// cpuTimes is the machine's CPU time from /proc/stat, in clock ticks: all
// of it, and the part stolen, the time the host ran something else while a
// virtual CPU of this machine was ready to run.
type cpuTimes struct{ total, steal int64 }

// readCPUTimes reads the machine's CPU times; ok is false where
// /proc/stat is missing or unreadable (not Linux).
func readCPUTimes() (t cpuTimes, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, false
	}
	return parseCPUTimes(string(b))
}

// parseCPUTimes reads the first line of /proc/stat, "cpu  user nice
// system idle iowait irq softirq steal guest guest_nice" (guest time is
// already counted in user and nice, so it is not added again).
func parseCPUTimes(stat string) (cpuTimes, bool) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, false
	}
	var t cpuTimes
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return cpuTimes{}, false
		}
		t.total += n
		if i == 7 {
			t.steal = n
		}
	}
	return t, true
}

// stealPct is the share of the machine's CPU time stolen by its host
// between from and to, in percent; -1 when unknown.
func stealPct(from cpuTimes, fromOK bool, to cpuTimes, toOK bool) float64 {
	if !fromOK || !toOK || to.total <= from.total || to.steal < from.steal {
		return -1
	}
	return float64(to.steal-from.steal) * 100 / float64(to.total-from.total)
}
