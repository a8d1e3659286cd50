package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

const mainUsage = `tokenkeeper keeps OAuth2 access tokens valid for services.

Usage: tokenkeeper COMMAND [flags]

Broker:
  serve        run the broker: refresh credentials, serve tokens over HTTP
  init         create the database and print the first admin API key
  migrate      apply database migrations
  admin        recover: a new admin API key, offline, with the database and master key
  demo         run the whole thing offline against a built-in test provider

Client (talk to a running broker; --server, and $TOKENKEEPER_API_KEY or a login):
  login        sign in as a user; later commands use the session
  logout       end the session
  whoami       who the broker takes you for
  provider     add | list | show | update | rm: OAuth clients shared by credentials
  credential   add | list | show | update | rm | refresh | events
  connect      obtain a grant in the browser (a connect link) or on a device, and wait for it
  token        print a credential's current access token
  apikey       add | list | rm (also create | revoke)
  keys         rotate: add a data key, re-seal every secret, rotate the JWT signing key;
               rotate-master: re-wrap the data keys under a new master key (offline)
  user         add | list | rm | passwd | revoke-sessions: people who log in (admin or viewer)
  client       add | list | rm | rotate-secret: services using /oauth2/token
  audit        the audit log
  webhook      add | list | rm | test | deliveries: signed events to URLs

Programs without tokenkeeper code (--server, --api-key):
  agent          keep files fresh with tokens (config file or flags; SIGHUP reloads)
  exec           run a command with a token in its environment
  git-credential a git credential helper answering with a credential's token

Tools:
  testidp      run the OAuth2 test authorization server
  bench        refresh | read | chaos: measure the broker (chaos: kill replicas under load)
  version      print the version

Run 'tokenkeeper COMMAND --help' for a command's flags.
`

// run is the whole program: main only calls it.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	e := &env{ctx: ctx, getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	defer func() {
		// Every command's --help: its usage on standard output, exit 0.
		var hr *helpRequest
		if errors.As(err, &hr) {
			hr.c.printUsage(stdout)
			err = nil
		}
	}()
	if len(args) < 2 {
		fmt.Fprint(stderr, mainUsage)
		return errUsageShown
	}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdout, mainUsage)
		return nil
	case "version", "--version":
		return e.cmdVersion(rest)
	case "serve":
		return e.cmdServe(rest)
	case "init":
		return e.cmdInit(rest)
	case "migrate":
		return e.cmdMigrate(rest)
	case "demo":
		return e.cmdDemo(rest)
	case "testidp":
		return e.cmdTestIDP(rest)
	case "credential", "credentials", "cred":
		return e.subcommand("credential", rest, map[string]func([]string) error{
			"add": e.cmdCredentialAdd, "list": e.cmdCredentialList, "show": e.cmdCredentialShow,
			"update": e.cmdCredentialUpdate, "rm": e.cmdCredentialRemove, "refresh": e.cmdCredentialRefresh,
			"events": e.cmdCredentialEvents,
		})
	case "provider", "providers":
		return e.subcommand("provider", rest, map[string]func([]string) error{
			"add": e.cmdProviderAdd, "list": e.cmdProviderList, "show": e.cmdProviderShow,
			"update": e.cmdProviderUpdate, "rm": e.cmdProviderRemove, "presets": e.cmdProviderPresets,
		})
	case "connect":
		return e.cmdConnect(rest)
	case "token":
		return e.cmdToken(rest)
	case "login":
		return e.cmdLogin(rest)
	case "logout":
		return e.cmdLogout(rest)
	case "whoami":
		return e.cmdWhoami(rest)
	case "apikey", "apikeys":
		return e.subcommand("apikey", rest, map[string]func([]string) error{
			"create": e.cmdAPIKeyCreate, "list": e.cmdAPIKeyList, "revoke": e.cmdAPIKeyRevoke,
			"add": e.cmdAPIKeyCreate, "rm": e.cmdAPIKeyRevoke, // the verbs of the other nouns
		})
	case "user", "users":
		return e.subcommand("user", rest, map[string]func([]string) error{
			"add": e.cmdUserAdd, "list": e.cmdUserList, "rm": e.cmdUserRemove, "passwd": e.cmdUserPasswd,
			"revoke-sessions": e.cmdUserRevokeSessions,
		})
	case "client", "clients":
		return e.subcommand("client", rest, map[string]func([]string) error{
			"add": e.cmdClientAdd, "list": e.cmdClientList, "rm": e.cmdClientRemove, "rotate-secret": e.cmdClientRotate,
		})
	case "audit":
		return e.cmdAudit(rest)
	case "agent":
		return e.cmdAgent(rest)
	case "exec":
		return e.cmdExec(rest)
	case "git-credential":
		return e.cmdGitCredential(rest)
	case "webhook", "webhooks":
		return e.subcommand("webhook", rest, map[string]func([]string) error{
			"add": e.cmdWebhookAdd, "list": e.cmdWebhookList, "rm": e.cmdWebhookRemove, "test": e.cmdWebhookTest,
			"deliveries": e.cmdWebhookDeliveries,
		})
	case "admin":
		return e.subcommand("admin", rest, map[string]func([]string) error{"recover": e.cmdAdminRecover})
	case "keys":
		return e.subcommand("keys", rest, map[string]func([]string) error{"rotate": e.cmdKeysRotate, "rotate-master": e.cmdKeysRotateMaster})
	case "bench":
		return e.subcommand("bench", rest, map[string]func([]string) error{
			"refresh": e.cmdBenchRefresh, "read": e.cmdBenchRead, "chaos": e.cmdBenchChaos, "scale": e.cmdBenchScale,
		})
	}
	return usagef("unknown command %q; run 'tokenkeeper --help' for the list", cmd)
}

// env is what every command may use.
type env struct {
	ctx            context.Context
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
}

func (e *env) subcommand(group string, args []string, cmds map[string]func([]string) error) error {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help" {
		w := e.stdout
		if len(args) == 0 {
			w = e.stderr
		}
		fmt.Fprintf(w, "Usage: tokenkeeper %s %s [flags]\n\nRun 'tokenkeeper %s SUBCOMMAND --help' for its flags.\n", group, strings.Join(names, "|"), group)
		if len(args) == 0 {
			return errUsageShown
		}
		return nil
	}
	f, ok := cmds[args[0]]
	if !ok {
		return usagef("unknown subcommand %q of %s; expected one of %s", args[0], group, strings.Join(names, ", "))
	}
	return f(args[1:])
}

func (e *env) cmdVersion(args []string) error {
	c := newCommand(e.stderr, "tokenkeeper version [--json]", "Prints the version of this binary.")
	asJSON := c.fs.Bool("json", false, "print JSON")
	if err := c.parse(args, e.getenv); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, map[string]string{"version": versionString()})
	}
	fmt.Fprintln(e.stdout, "tokenkeeper", versionString())
	return nil
}
