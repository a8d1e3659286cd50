package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkDriver drives a load target with the wrk HTTP benchmark
// (github.com/wg/wrk) instead of the built-in driver: the figure the
// issue's acceptance is stated in, measured by the tool itself.
type wrkDriver struct {
	path    string // the binary, resolved
	threads int    // wrk -t
	dir     string // for the request scripts, mode 0700
}

// newWrkDriver finds wrk (a path or a name on PATH) and checks that it
// runs, before any broker starts.
func newWrkDriver(ctx context.Context, bin string, threads int) (*wrkDriver, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, configErrorf("--wrk %s: %v (Debian: apt-get install wrk)", bin, errors.Unwrap(err))
	}
	// wrk has no --version: -v prints its version and exits 1.
	out, _ := exec.CommandContext(ctx, path, "-v").CombinedOutput()
	if !bytes.HasPrefix(out, []byte("wrk ")) {
		return nil, configErrorf("--wrk %s: not the wrk benchmark (it printed %q to -v)", path, firstLine(out))
	}
	dir, err := os.MkdirTemp("", "tokenkeeper-wrk-")
	if err != nil {
		return nil, err
	}
	return &wrkDriver{path: path, threads: threads, dir: dir}, nil
}

func (d *wrkDriver) close() { _ = os.RemoveAll(d.dir) }

// describe names the driver as the report does.
func (d *wrkDriver) describe() string { return fmt.Sprintf("wrk -t%d", d.threads) }

// run drives t for dur from conns connections. The request's method,
// body and Authorization header are set by a Lua script in a private
// directory, so that no secret is on wrk's command line, which every
// local user can read.
func (d *wrkDriver) run(ctx context.Context, t loadTarget, conns int, dur time.Duration) (ReadRun, error) {
	script, err := wrkScript(t)
	if err != nil {
		return ReadRun{}, err
	}
	f := filepath.Join(d.dir, t.key+".lua")
	if err := os.WriteFile(f, []byte(script), 0o600); err != nil {
		return ReadRun{}, err
	}
	defer os.Remove(f)
	args := []string{"-t" + strconv.Itoa(d.threads), "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(dur/time.Second)) + "s",
		"--latency", "--timeout", "10s", "-s", f, t.target}
	ctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, d.path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return ReadRun{}, fmt.Errorf("wrk against %s: %v: %s", t.name, err, firstLine(append(stderr.Bytes(), stdout.Bytes()...)))
	}
	run, err := parseWrk(stdout.String())
	if err != nil {
		return ReadRun{}, fmt.Errorf("wrk against %s: %w", t.name, err)
	}
	return run, nil
}

// wrkScript is the Lua that makes wrk send t's request.
func wrkScript(t loadTarget) (string, error) {
	var b strings.Builder
	set := func(lhs, v string) error {
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] > 0x7e {
				return fmt.Errorf("wrk script: %s holds a byte Lua would need escaped", lhs)
			}
		}
		v = strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v)
		fmt.Fprintf(&b, "%s = \"%s\"\n", lhs, v)
		return nil
	}
	var err error
	if t.form != "" {
		err = errors.Join(set("wrk.method", "POST"), set("wrk.body", t.form),
			set(`wrk.headers["Content-Type"]`, "application/x-www-form-urlencoded"))
	}
	if t.auth != "" {
		err = errors.Join(err, set(`wrk.headers["Authorization"]`, t.auth))
	}
	return b.String(), err
}

var (
	wrkRate      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)\s*$`)
	wrkRequests  = regexp.MustCompile(`(?m)^\s+(\d+) requests in `)
	wrkPercent   = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.0+)?%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	wrkNon2xx    = regexp.MustCompile(`(?m)^\s+Non-2xx or 3xx responses: (\d+)\s*$`)
	wrkSocketErr = regexp.MustCompile(`(?m)^\s+Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$`)
)

// parseWrk reads the figures of wrk's report (run with --latency): the
// request rate, the p50 and p99 latencies, and the errors: answers other
// than 2xx or 3xx, and socket errors.
func parseWrk(out string) (ReadRun, error) {
	var r ReadRun
	m := wrkRate.FindStringSubmatch(out)
	n := wrkRequests.FindStringSubmatch(out)
	if m == nil || n == nil {
		return r, fmt.Errorf("no request rate in its report: %q", firstLine([]byte(out)))
	}
	r.RequestsPerSecond, _ = strconv.ParseFloat(m[1], 64)
	r.Requests, _ = strconv.ParseInt(n[1], 10, 64)
	for _, p := range wrkPercent.FindAllStringSubmatch(out, -1) {
		d, err := time.ParseDuration(p[2] + p[3])
		if err != nil {
			return r, fmt.Errorf("latency %s%s: %w", p[2], p[3], err)
		}
		if p[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	if r.P50 == 0 || r.P99 == 0 {
		return r, errors.New("no latency distribution in its report (wrk run without --latency?)")
	}
	if e := wrkNon2xx.FindStringSubmatch(out); e != nil {
		v, _ := strconv.ParseInt(e[1], 10, 64)
		r.Errors += v
	}
	if e := wrkSocketErr.FindStringSubmatch(out); e != nil {
		for _, s := range e[1:] {
			v, _ := strconv.ParseInt(s, 10, 64)
			r.Errors += v
		}
	}
	return r, nil
}

// firstLine is b's first non-empty line, trimmed, for error messages.
func firstLine(b []byte) string {
	for l := range strings.SplitSeq(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}
