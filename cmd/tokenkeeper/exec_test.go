package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// exec gives the command a valid token in the variable asked for, not the
// API key, and passes its exit status through.
func TestExecPassesTokenAndExitStatus(t *testing.T) {
	b := startConsumerBroker(t, time.Hour)
	dir := t.TempDir()
	t.Setenv("TOKENKEEPER_API_KEY", b.key) // the child must not see it
	t.Setenv("TOKENKEEPER_SERVER", b.url)
	execRun := func(args ...string) (string, error) {
		var out syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper", "exec"}, args...), os.Getenv, strings.NewReader(""), &out, &syncBuffer{})
		return out.String(), err
	}
	out, err := execRun("--credential", "cred", "--", "sh", "-c", `printf '%s %s' "$TOKENKEEPER_TOKEN" "${TOKENKEEPER_API_KEY:-nokey}"; exit 7`)
	if exitCode(err) != 7 {
		t.Fatalf("exit %d (%v), want the command's 7", exitCode(err), err)
	}
	tok, rest, _ := strings.Cut(out, " ")
	if !b.idp.ValidAccessToken(tok) {
		t.Errorf("the command got %q in $TOKENKEEPER_TOKEN, not a valid token", tok)
	}
	if rest != "nokey" {
		t.Errorf("the command saw the API key")
	}
	out, err = execRun("--credential", "cred", "--env", "GH_TOKEN", "--min-ttl", "1m", "--", "sh", "-c", `printf %s "$GH_TOKEN"`)
	if err != nil || !b.idp.ValidAccessToken(out) {
		t.Errorf("--env GH_TOKEN: %v, got a valid token: %v", err, b.idp.ValidAccessToken(out))
	}
	if _, err := execRun("--credential", "cred", "--", filepath.Join(dir, "missing")); exitCode(err) != 127 {
		t.Errorf("a missing command: exit %d, want 127", exitCode(err))
	}
	if _, err := execRun("--credential", "nope", "--", "true"); err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "404") {
		t.Errorf("an unknown credential: %v (exit %d)", err, exitCode(err))
	}
	for _, args := range [][]string{
		{"--credential", "cred", "true"}, // no --
		{"--credential", "cred", "--"},   // no command
		{"--credential", "cred"},         // neither
		{"--", "true"},                   // no credential
		{"--credential", "cred", "--env", "1X", "--", "true"},
		{"--credential", "cred", "--min-ttl", "-1s", "--", "true"},
	} {
		var stderr syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper", "exec"}, args...), os.Getenv, strings.NewReader(""), &syncBuffer{}, &stderr)
		if exitCode(err) != 2 {
			t.Errorf("exec %v: exit %d (%v), want 2", args, exitCode(err), err)
		}
	}
	var stderr syncBuffer
	run(context.Background(), []string{"tokenkeeper", "exec", "--credential", "cred", "true"}, os.Getenv, strings.NewReader(""), &syncBuffer{}, &stderr)
	if !strings.Contains(stderr.String(), "Usage: tokenkeeper exec") {
		t.Errorf("exec without -- printed no usage: %q", stderr.String())
	}
}

// Signals sent to `tokenkeeper exec` reach the command, and a command ended
// by a signal gives 128+N.
func TestExecForwardsSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: builds the binary")
	}
	b := startConsumerBroker(t, time.Hour)
	bin := buildBinary(t, t.TempDir())
	start := func(script string) (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(bin, "exec", "--credential", "cred", "--", "sh", "-c", script)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TOKENKEEPER_SERVER=" + b.url, "TOKENKEEPER_API_KEY=" + b.key}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() || sc.Text() != "ready" {
			t.Fatalf("the command did not start: %q", sc.Text())
		}
		return cmd, sc
	}
	// The command traps TERM and HUP and reports them.
	cmd, sc := start(`trap 'echo got-hup' HUP; trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done`)
	cmd.Process.Signal(syscall.SIGHUP)
	if !sc.Scan() || sc.Text() != "got-hup" {
		t.Errorf("after SIGHUP the command said %q", sc.Text())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if !sc.Scan() || sc.Text() != "got-term" {
		t.Errorf("after SIGTERM the command said %q", sc.Text())
	}
	err := cmd.Wait()
	if cmd.ProcessState.ExitCode() != 42 {
		t.Errorf("exit %d (%v), want the command's 42", cmd.ProcessState.ExitCode(), err)
	}
	// A command that does not trap TERM dies of it: 128+15.
	cmd, _ = start(`echo ready; exec sleep 30`)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if got := cmd.ProcessState.ExitCode(); got != 128+15 {
		t.Errorf("a command killed by SIGTERM: exit %d, want 143", got)
	}
}
