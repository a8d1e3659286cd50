package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/bench"
)

const chaosAbout = `Runs several 'tokenkeeper serve' replicas on one PostgreSQL database
against the built-in test provider (rotating refresh tokens, reuse detection,
20 ms latency), reads tokens from random replicas throughout, and every
--kill-every sends one replica (round robin) --signal and restarts it on the
same port. --db-restart-every also restarts PostgreSQL itself (by default
'pg_ctlcluster --skip-systemctl-redirect VERSION main restart', which needs a
local Debian-style cluster and the rights to restart it).

Setup: a fresh schema in --database (dropped at the end), a random master key
given to every replica in $TOKENKEEPER_MASTER_KEY, 'tokenkeeper init' for an
admin key, N replicas on fixed loopback ports, and the credentials created
through the API (refresh_token grant, one token family each). Every
subprocess is stopped when the command ends, also on Ctrl-C; replica logs go
to --logs (default: a temporary directory, kept only if a check failed).

The refresh lead. A replica killed right after it claimed a credential keeps
the claim until its lease runs out (lease = --provider-timeout + 5s); then
another replica claims and refreshes it. Readers are served a token only while
it has more than a leeway left (a tenth of the lifetime, at most 5s). The
default lead is therefore lease + leeway + 2s (11s with the defaults), so that
a kill at the worst instant still leaves time for another replica to replace
the token before any reader could see it run out. When that does not fit in
the lifetime, the lead is half the lifetime and a SIGKILL may let tokens run
out (TERM never does: a replica finishes its refreshes on SIGTERM).

Reads are checked against the provider's own records (expired, revoked or
unknown token), and every --resource-every'th read also calls the provider's
protected /resource endpoint. Failed reads are split into those that overlap a
killed or restarting replica's downtime (plus 1s), those that overlap a
database restart (until the database answers again, plus 2s), those of
credentials lost, and all others.

At the end every replica is stopped with SIGTERM (so that nothing is cut by
the stop itself) and each credential is compared between the store and the
provider:
  - lost: needs_reauth in the store, or its refresh token's family revoked at
    the provider, or (strict provider) its stored refresh token is no longer
    the family's current one, so the next refresh would be a reuse;
  - refreshes answered but never committed, counted two ways that must agree:
    (a) the family's refresh tokens never presented to the provider, less the
        one the store holds (a token the store ever held was presented before
        it was replaced, so every other unpresented token is an answer the
        store never saw), and
    (b) the provider's successful refreshes of the family (its generation
        less one) less the store's committed 'ok' refresh events.
    Answers a replica received but discarded because it was fenced out are
    recorded as 'fenced' events; the rest are refreshes cut between the
    provider's answer and the commit (by a kill, or an answer lost in
    transit).
A loss on a credential without any cut refresh is a bug ("unexplained").

The table ends with one JSON line (--json prints only that). The command
exits non-zero when a check of the issue's acceptance fails: with SIGTERM or
a grace period, any reuse detection (outside the grace) or loss; always, an
expired, revoked or unknown token served for a credential not lost, an
unexplained loss or reuse detection, a replica that exited by itself, a
secret in a replica's log, or (with --db-restart-every) refreshes that did
not resume after a restart.`

func (e *env) cmdBenchChaos(c *command) runFunc {
	c.commandEnv() // a tool: its variables must not be the broker's
	c.describe("tokenkeeper bench chaos --database postgres://... [--replicas 3] [--credentials 2000] [--lifetime 20s] [--duration 10m] [--kill-every 10s] [--signal TERM|KILL] [--grace D] [--db-restart-every D] [--json]", chaosAbout)
	var cfg bench.ChaosConfig
	c.fs.IntVar(&cfg.Replicas, "replicas", 3, "number of 'tokenkeeper serve' replicas")
	c.fs.IntVar(&cfg.Credentials, "credentials", 2000, "number of credentials")
	c.fs.DurationVar(&cfg.Lifetime, "lifetime", 20*time.Second, "access token lifetime at the test provider")
	c.fs.DurationVar(&cfg.Duration, "duration", 10*time.Minute, "how long to run the chaos, after every credential has its first token")
	c.fs.DurationVar(&cfg.KillEvery, "kill-every", 10*time.Second, "interval between replica kills (0: none)")
	c.fs.StringVar(&cfg.Signal, "signal", "TERM", "signal that kills a replica: TERM or KILL")
	c.fs.DurationVar(&cfg.Grace, "grace", 0, "the provider's rotation grace period (0: strict reuse detection)")
	c.fs.DurationVar(&cfg.DBRestartEvery, "db-restart-every", 0, "interval between PostgreSQL restarts (0: none)")
	dbCmd := c.fs.String("db-restart-command", "", "command that restarts PostgreSQL, split on spaces (default: pg_ctlcluster --skip-systemctl-redirect VERSION main restart)")
	c.fs.StringVar(&cfg.Database, "database", "", "PostgreSQL URL (required); the run uses a fresh schema in it")
	c.fs.DurationVar(&cfg.Latency, "latency", 20*time.Millisecond, "test provider latency per token request")
	c.fs.DurationVar(&cfg.ProviderTimeout, "provider-timeout", 2*time.Second, "the replicas' --provider-timeout; their lease is this plus 5s")
	c.fs.DurationVar(&cfg.RefreshLead, "refresh-lead", 0, "refresh lead of every credential (default: lease + read leeway + 2s, see above)")
	c.fs.IntVar(&cfg.Consumers, "consumers", 16, "concurrent readers")
	c.fs.IntVar(&cfg.ReadRate, "read-rate", 400, "token reads per second, over all readers")
	c.fs.IntVar(&cfg.ResourceEvery, "resource-every", 10, "also call the provider's /resource with every N'th token read (0: never)")
	c.fs.StringVar(&cfg.Binary, "binary", "", "tokenkeeper binary to run the replicas with (default: this one)")
	c.fs.StringVar(&cfg.LogDir, "logs", "", "directory for the replicas' logs, kept (default: a temporary one, removed unless a check failed)")
	asJSON := c.fs.Bool("json", false, "print only the JSON line")
	c.envless("binary", "logs")
	return func(args []string) error {
		if _, err := c.args(0, "no arguments"); err != nil {
			return err
		}
		if cfg.Database == "" {
			return usagef("--database (or $%s) is required: a postgres:// URL", c.envVar("database"))
		}
		cfg.DBRestartCommand = strings.Fields(*dbCmd)
		if cfg.Binary == "" {
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find this binary: %w", err)
			}
			cfg.Binary = bin
		}
		rep, err := bench.Chaos(e.ctx, cfg, e.benchWiring(), e.benchLogf)
		if err != nil {
			return benchError(err)
		}
		if !*asJSON {
			if err := rep.WriteText(e.stdout); err != nil {
				return err
			}
		}
		line, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, string(line))
		return rep.Err()
	}
}
