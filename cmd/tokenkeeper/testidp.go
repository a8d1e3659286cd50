package main

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// clientsFlag collects repeated --client ID:SECRET flags.
type clientsFlag [][2]string

func (c *clientsFlag) String() string { return "" }
func (c *clientsFlag) Type() string   { return "ID:SECRET" }
func (c *clientsFlag) Set(v string) error {
	id, secret, ok := strings.Cut(v, ":")
	if !ok || id == "" || secret == "" {
		return fmt.Errorf("expected ID:SECRET")
	}
	*c = append(*c, [2]string{id, secret})
	return nil
}

func (e *env) cmdTestIDP(c *command) runFunc {
	c.commandEnv() // a tool: its variables must not be the broker's
	c.describe("tokenkeeper testidp [--addr 127.0.0.1:9090] [--lifetime 60s] [--rotate] [--reuse-detection] [--revoke-previous] [--consent] [--oidc] --clients-file FILE|-",
		`Runs the OAuth2 test authorization server (package oauthtest): a token
endpoint (client_credentials, refresh_token, authorization_code with PKCE,
device_code), an authorize endpoint that approves at once or, with
--consent, shows a consent page, the device flow (RFC 8628) with its
verification page at /device, revocation, RFC 8414 metadata, optional
OpenID Connect ID tokens (--oidc), and a protected resource at /resource.
For tests and demos only: it keeps everything in memory. Each grant is
logged, never a secret.`)
	addr := c.fs.String("addr", "127.0.0.1:9090", "address to listen on")
	lifetime := c.fs.Duration("lifetime", time.Minute, "access token lifetime")
	rotate := c.fs.Bool("rotate", false, "rotate the refresh token on every refresh")
	reuse := c.fs.Bool("reuse-detection", false, "revoke the whole token family when a rotated refresh token is presented again")
	revokePrev := c.fs.Bool("revoke-previous", false, "revoke the previous access token of a grant whenever a new one is issued, as strict providers do on refresh")
	grace := c.fs.Duration("grace", 0, "with --reuse-detection: accept a rotated refresh token again for this long")
	latency := c.fs.Duration("latency", 0, "delay added to every token request")
	var clients clientsFlag
	c.fs.Var(&clients, "client", "register a client ID:SECRET (repeatable)")
	clientsFile := c.fs.String("clients-file", "", "register the clients in this file, one ID:SECRET a line ('-': standard input)")
	fl := registerFlowFlags(c)
	var lo logOptions
	lo.register(c)
	c.envless("client", "public-client")
	c.inlineSecret("client", "--clients-file (or '-' for standard input)")
	return func(args []string) error {
		if *clientsFile != "" {
			text, err := e.secretValue("", *clientsFile, "clients file")
			if err != nil {
				return err
			}
			for i, line := range strings.Split(text, "\n") {
				if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				if err := clients.Set(line); err != nil {
					return usagef("--clients-file line %d: %v", i+1, err)
				}
			}
		}
		if _, err := c.args(0, "no positional arguments"); err != nil {
			return err
		}
		if len(clients) == 0 && len(fl.public) == 0 {
			return usagef("register at least one client with --clients-file FILE (lines of ID:SECRET), --client ID:SECRET or --public-client ID")
		}
		flowOpts, err := fl.options()
		if err != nil {
			return err
		}
		if *lifetime <= 0 || *latency < 0 || *grace < 0 {
			return usagef("--lifetime must be positive, --latency and --grace not negative")
		}
		if *grace > 0 && !*reuse {
			return usagef("--grace needs --reuse-detection")
		}
		logger, err := lo.logger(e.stderr)
		if err != nil {
			return err
		}
		opts := []oauthtest.Option{
			oauthtest.WithLifetime(*lifetime), oauthtest.WithRotation(*rotate), oauthtest.WithLatency(*latency),
			oauthtest.WithRevokePrevious(*revokePrev),
			oauthtest.WithLogger(logger.With("component", "testidp")),
		}
		if *reuse {
			opts = append(opts, oauthtest.WithReuseDetection(*grace))
		}
		for _, cl := range clients {
			opts = append(opts, oauthtest.WithClient(cl[0], cl[1]))
		}
		opts = append(opts, flowOpts...)
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", *addr, err)
		}
		srv := oauthtest.NewServerOn(ln, opts...)
		defer srv.Close()
		fmt.Fprintf(e.stdout, "oauthtest authorization server (in memory, for tests)\n")
		fmt.Fprintf(e.stdout, "  issuer:    %s\n  token URL: %s\n  authorize: %s\n  resource:  %s\n", srv.URL(), srv.TokenURL(), srv.AuthorizeURL(), srv.ResourceURL())
		fl.printURLs(e.stdout, srv)
		if len(clients) > 0 {
			fmt.Fprintf(e.stdout, "Try: curl -u %s:SECRET -d grant_type=client_credentials %s\n", clients[0][0], srv.TokenURL())
		}
		logger.Info("testidp started", "issuer", srv.URL(), "clients", len(clients)+len(fl.public), "lifetime", lifetime.String(), "rotate", *rotate, "reuse_detection", *reuse,
			"revoke_previous", *revokePrev, "consent", *fl.consent, "oidc", *fl.oidc)
		<-e.ctx.Done()
		logger.Info("testidp stopped")
		return nil
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
