package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

const execAbout = `Runs COMMAND with a valid access token of a credential in its environment
(in $TOKENKEEPER_TOKEN unless --env names another variable), and exits with the
command's exit status (128+N if a signal N ended it). Signals sent to tokenkeeper
(INT, TERM, HUP, QUIT, USR1, USR2, WINCH) are forwarded to the command. The
broker's API key ($TOKENKEEPER_API_KEY) is not passed on to the command.

  tokenkeeper exec --credential github --env GH_TOKEN -- gh repo list
  tokenkeeper exec --credential payments --min-ttl 5m -- ./nightly-report.sh`

// apiKeyFileOption adds --api-key-file to a client command.
type apiKeyFileOption struct{ path string }

func (o *apiKeyFileOption) register(c *command) {
	c.fs.StringVar(&o.path, "api-key-file", "", "read the API key from this file")
}

// apply reads the key file into ao when given.
func (o *apiKeyFileOption) apply(ao *apiOptions) error {
	if o.path == "" {
		return nil
	}
	b, err := os.ReadFile(o.path)
	if err != nil {
		return fmt.Errorf("API key: %w", err)
	}
	if ao.apiKey = strings.TrimSpace(string(b)); ao.apiKey == "" {
		return fmt.Errorf("API key: %s is empty", o.path)
	}
	return nil
}

// exitStatus is the exit status of a command run by exec, passed through.
type exitStatus int

func (s exitStatus) Error() string { return fmt.Sprintf("the command exited with status %d", int(s)) }

// forwardedSignals are passed on to a command run by exec.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

func (e *env) cmdExec(c *command) runFunc {
	c.describe("tokenkeeper exec --credential NAME [--env VAR] [--min-ttl 30s] -- COMMAND [ARGS...]", execAbout)
	c.cc.ValidArgsFunction = nil // the command after --: files
	var ao apiOptions
	ao.register(c)
	var kf apiKeyFileOption
	kf.register(c)
	credential := c.fs.String("credential", "", "the credential whose token the command gets (required)")
	envVar := c.fs.String("env", "TOKENKEEPER_TOKEN", "the environment variable that holds the token")
	minTTL := c.fs.Duration("min-ttl", 0, "the token has at least this much life left (the broker refreshes first if needed)")
	c.envless("credential", "env", "min-ttl")
	return func(args []string) error {
		if c.dashAt < 0 {
			c.printUsage(e.stderr)
			return usagef("exec: put -- before the command: tokenkeeper exec --credential NAME -- COMMAND [ARGS...]")
		}
		argv := args[c.dashAt:]
		c.positional = args[:c.dashAt]
		switch {
		case len(argv) == 0 || argv[0] == "":
			c.printUsage(e.stderr)
			return usagef("exec: no command after --")
		case len(c.positional) > 0:
			return usagef("exec: unexpected argument %q before --", c.positional[0])
		case *credential == "":
			return usagef("exec: --credential is required")
		case !envVarName(*envVar):
			return usagef("exec: --env %q is not a variable name", *envVar)
		case *minTTL < 0:
			return usagef("exec: --min-ttl must not be negative")
		}
		if err := kf.apply(&ao); err != nil {
			return err
		}
		cl, err := e.apiClient(&ao)
		if err != nil {
			return err
		}
		path := "/v1/credentials/" + url.PathEscape(*credential) + "/token"
		if *minTTL > 0 {
			path += "?min_ttl=" + url.QueryEscape(minTTL.String())
		}
		var tv tokenView
		if err := cl.do(e.ctx, "GET", path, nil, &tv); err != nil {
			return fmt.Errorf("exec: get the token of %s: %w", *credential, err)
		}
		if tv.AccessToken == "" {
			return fmt.Errorf("exec: the broker answered without a token")
		}
		if *minTTL > 0 && tv.ExpiresAt != nil && time.Until(*tv.ExpiresAt) < *minTTL {
			return fmt.Errorf("exec: the token of %s has %s left, less than --min-ttl %s", *credential,
				time.Until(*tv.ExpiresAt).Round(time.Second), *minTTL)
		}

		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(withoutVars(os.Environ(), "TOKENKEEPER_API_KEY", *envVar), *envVar+"="+tv.AccessToken)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, forwardedSignals...)
		defer signal.Stop(sigs)
		if err := cmd.Start(); err != nil {
			if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(e.stderr, "tokenkeeper exec: %s: command not found\n", argv[0])
				return exitStatus(127)
			}
			fmt.Fprintf(e.stderr, "tokenkeeper exec: %v\n", err)
			return exitStatus(126)
		}
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case err := <-waited:
				if err == nil {
					return nil
				}
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					return fmt.Errorf("exec: %w", err)
				}
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return exitStatus(128 + int(ws.Signal()))
				}
				return exitStatus(ee.ExitCode())
			}
		}
	}
}

// envVarName reports whether s is a portable environment variable name.
func envVarName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// withoutVars returns env without the named variables.
func withoutVars(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, name) {
			out = append(out, kv)
		}
	}
	return out
}
