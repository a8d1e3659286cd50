package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/agent"
)

const agentAbout = `Keeps files fresh with credentials' access tokens, for programs that read a
token from a file. Each sink names a credential and a file; the agent renews the
token before it expires and replaces the file atomically. While the broker is
unreachable the file keeps its last token until shortly before that token
expires; then it is removed (on_expiry "remove", the default) or emptied
("empty"), so a file never holds an expired token. The agent does the same when
it stops. SIGHUP reloads the configuration; a bad one is logged and the running
one kept.

The configuration is JSON:
  {
    "server": "http://127.0.0.1:8080",
    "api_key_file": "/etc/tokenkeeper/agent.key",
    "sinks": [
      {"credential": "github", "path": "/run/app/github-token"},
      {"credential": "payments", "path": "/run/app/payments.env", "template": "env:PAYMENTS_TOKEN",
       "mode": "0640", "on_expiry": "empty", "command": ["systemctl", "reload", "app"]}
    ]
  }
Templates: raw (the token alone), header ("Authorization: Bearer ..."), json
({"access_token", "token_type", "expires_at"}), env:VAR (VAR=token). Mode: octal,
0600 by default. Command: a program and its arguments, run without a shell after
each change, with TOKENKEEPER_SINK_PATH, TOKENKEEPER_SINK_CREDENTIAL and
TOKENKEEPER_SINK_EVENT (updated or expired) in its environment.
Instead of api_key_file: $TOKENKEEPER_API_KEY, or client_id and client_secret_file
to read through the broker's /oauth2/token as a service client.

For one sink, flags replace the file:
  tokenkeeper agent --credential github --path /run/app/token [-- COMMAND ARGS...]`

func (e *env) cmdAgent(c *command) runFunc {
	c.describe("tokenkeeper agent (--config FILE | --credential NAME --path FILE [flags] [-- COMMAND ARGS...])", agentAbout)
	c.cc.ValidArgsFunction = nil // the command after --: files
	configFile := c.fs.String("config", "", "the JSON configuration file")
	server := c.fs.String("server", "", "broker URL (overrides the configuration's server; default http://127.0.0.1:8080)")
	apiKey := c.fs.String("api-key", "", "API key (prefer $TOKENKEEPER_API_KEY or --api-key-file: a flag shows in the process list)")
	apiKeyFile := c.fs.String("api-key-file", "", "read the API key from this file")
	clientID := c.fs.String("client-id", "", "read tokens from /oauth2/token as this service client")
	clientSecretFile := c.fs.String("client-secret-file", "", "the service client's secret")
	credential := c.fs.String("credential", "", "one sink: the credential")
	path := c.fs.String("path", "", "one sink: the file to keep fresh")
	template := c.fs.String("template", "raw", "one sink: raw, header, json or env:VAR")
	mode := c.fs.String("mode", "0600", "one sink: the file's mode, octal")
	onExpiry := c.fs.String("on-expiry", "remove", "one sink: remove or empty the file when its token expires")
	retryMax := c.fs.Duration("retry-max", 15*time.Second, "the longest wait between attempts while the broker fails")
	var lo logOptions
	lo.register(c)
	c.envless("credential", "path", "template", "mode", "on-expiry")
	return func(args []string) error {
		logger, err := lo.logger(e.stderr)
		if err != nil {
			return err
		}
		single := *credential != "" || *path != ""
		switch {
		case *configFile != "" && single:
			return usagef("agent: give --config or --credential and --path, not both")
		case *configFile == "" && !single:
			return usagef("agent: give --config FILE, or --credential NAME and --path FILE (see tokenkeeper agent --help)")
		case single && (*credential == "" || *path == ""):
			return usagef("agent: --credential and --path go together")
		case *retryMax < time.Second:
			return usagef("agent: --retry-max must be at least 1s")
		case *configFile != "" && len(c.positional) > 0:
			return usagef("agent: a command after -- goes with --credential; in a configuration file use a sink's \"command\"")
		}
		load := func() (*agent.Config, error) {
			var cfg *agent.Config
			if *configFile != "" {
				var err error
				if cfg, err = agent.LoadConfig(*configFile); err != nil {
					return nil, err
				}
			} else {
				cfg = &agent.Config{Sinks: []agent.Sink{{Credential: *credential, Path: *path,
					Template: *template, Mode: *mode, OnExpiry: *onExpiry, Command: c.positional}}}
				if err := cfg.Validate(); err != nil {
					return nil, usagef("%v", err)
				}
			}
			// Flags and the environment win over the file.
			if *server != "" {
				cfg.Server = *server
			}
			if cfg.Server == "" {
				cfg.Server = "http://127.0.0.1:8080"
			}
			if *clientID != "" {
				cfg.ClientID, cfg.APIKeyFile = *clientID, ""
			}
			if *clientSecretFile != "" {
				cfg.ClientSecretFile = *clientSecretFile
			}
			if *apiKeyFile != "" {
				cfg.APIKeyFile = *apiKeyFile
			}
			if *apiKey != "" && *apiKeyFile == "" && *clientID == "" {
				cfg.APIKey = *apiKey
			}
			if err := cfg.Resolve(); err != nil {
				return nil, err
			}
			return cfg, nil
		}
		cfg, err := load()
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		ag := agent.New(agent.Options{Logger: logger, CommandOutput: e.stderr, BackoffMax: *retryMax})
		if err := ag.Apply(e.ctx, cfg); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		defer ag.Stop()
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		logger.Info("agent running", "sinks", len(cfg.Sinks))
		for {
			select {
			case <-e.ctx.Done():
				logger.Info("agent stopping")
				return nil
			case <-hup:
				cfg, err := load()
				if err == nil {
					err = ag.Apply(e.ctx, cfg)
				}
				if err != nil {
					if errors.Is(err, agent.ErrStopped) {
						return nil
					}
					logger.Error("reload failed; keeping the running configuration", "error", err)
					continue
				}
				logger.Info("configuration reloaded", "sinks", len(cfg.Sinks))
			}
		}
	}
}
