package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
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
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := &env{ctx: ctx, getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	root := e.commands()
	if len(args) > 0 {
		args = args[1:]
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

// commands returns the command tree. The tree is built anew for each run:
// a command's flags are bound to the variables of that one run.
func (e *env) commands() *cobra.Command {
	root := &cobra.Command{
		Use:           "tokenkeeper",
		Version:       versionString(),
		Args:          cobra.ArbitraryArgs,
		SilenceErrors: true, // main prints the error, and the exit code says what it was
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				fmt.Fprint(e.stderr, mainUsage)
				return errUsageShown
			}
			return usagef("unknown command %q%s; run 'tokenkeeper --help' for the list", args[0], suggest(cmd, args[0]))
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetVersionTemplate("tokenkeeper {{.Version}}\n")
	root.SetHelpFunc(func(*cobra.Command, []string) { fmt.Fprint(e.stdout, mainUsage) })
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(
		e.leaf("version", e.cmdVersion),
		e.leaf("serve", e.cmdServe),
		e.leaf("init", e.cmdInit),
		e.leaf("migrate", e.cmdMigrate),
		e.leaf("demo", e.cmdDemo),
		e.leaf("testidp", e.cmdTestIDP),
		e.group("credential", []string{"credentials", "cred"},
			e.leaf("add", e.cmdCredentialAdd),
			e.leaf("list", e.cmdCredentialList),
			e.leaf("show", e.cmdCredentialShow),
			e.leaf("update", e.cmdCredentialUpdate),
			e.leaf("rm", e.cmdCredentialRemove),
			e.leaf("refresh", e.cmdCredentialRefresh),
			e.leaf("events", e.cmdCredentialEvents)),
		e.group("provider", []string{"providers"},
			e.leaf("add", e.cmdProviderAdd),
			e.leaf("list", e.cmdProviderList),
			e.leaf("show", e.cmdProviderShow),
			e.leaf("update", e.cmdProviderUpdate),
			e.leaf("rm", e.cmdProviderRemove),
			e.leaf("presets", e.cmdProviderPresets)),
		e.leaf("connect", e.cmdConnect),
		e.leaf("token", e.cmdToken),
		e.leaf("login", e.cmdLogin),
		e.leaf("logout", e.cmdLogout),
		e.leaf("whoami", e.cmdWhoami),
		e.group("apikey", []string{"apikeys"},
			e.leaf("add", e.cmdAPIKeyCreate, "create"), // the verbs of the other nouns
			e.leaf("list", e.cmdAPIKeyList),
			e.leaf("rm", e.cmdAPIKeyRevoke, "revoke")),
		e.group("user", []string{"users"},
			e.leaf("add", e.cmdUserAdd),
			e.leaf("list", e.cmdUserList),
			e.leaf("rm", e.cmdUserRemove),
			e.leaf("passwd", e.cmdUserPasswd),
			e.leaf("revoke-sessions", e.cmdUserRevokeSessions)),
		e.group("client", []string{"clients"},
			e.leaf("add", e.cmdClientAdd),
			e.leaf("list", e.cmdClientList),
			e.leaf("rm", e.cmdClientRemove),
			e.leaf("rotate-secret", e.cmdClientRotate)),
		e.leaf("audit", e.cmdAudit),
		e.leaf("agent", e.cmdAgent),
		e.leaf("exec", e.cmdExec),
		e.leaf("git-credential", e.cmdGitCredential),
		e.group("webhook", []string{"webhooks"},
			e.leaf("add", e.cmdWebhookAdd),
			e.leaf("list", e.cmdWebhookList),
			e.leaf("rm", e.cmdWebhookRemove),
			e.leaf("test", e.cmdWebhookTest),
			e.leaf("deliveries", e.cmdWebhookDeliveries)),
		e.group("admin", nil,
			e.leaf("recover", e.cmdAdminRecover)),
		e.group("keys", nil,
			e.leaf("rotate", e.cmdKeysRotate),
			e.leaf("rotate-master", e.cmdKeysRotateMaster)),
		e.group("bench", nil,
			e.leaf("refresh", e.cmdBenchRefresh),
			e.leaf("read", e.cmdBenchRead),
			e.leaf("scale", e.cmdBenchScale),
			e.leaf("chaos", e.cmdBenchChaos)),
	)
	return root
}

// summary returns the first sentence of a command's description, cut to
// fit on a line of the group's help.
func summary(about string) string {
	s := strings.Join(strings.Fields(about), " ")
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSuffix(s, ".")
	const width = 72
	if len(s) > width {
		cut := strings.LastIndexAny(s[:width], ",:;(")
		if cut < width/2 {
			cut = strings.LastIndex(s[:width], " ")
		}
		s = strings.TrimSpace(s[:cut]) + " …"
	}
	return s
}

// suggest returns " (did you mean ...?)" for a mistyped command, or "".
func suggest(cmd *cobra.Command, typed string) string {
	cmd.SuggestionsMinimumDistance = 2
	if s := cmd.SuggestionsFor(typed); len(s) > 0 {
		return fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	return ""
}

// env is what every command may use.
type env struct {
	ctx            context.Context
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
}

// leaf returns a command that runs: define declares its flags, and the
// body it returns runs once cobra has parsed the command line and bind has
// read the environment.
func (e *env) leaf(name string, define defineFunc, aliases ...string) *cobra.Command {
	cc := &cobra.Command{Use: name, Aliases: aliases, Args: cobra.ArbitraryArgs}
	c := &command{cc: cc, fs: cc.Flags(), stderr: e.stderr}
	body := define(c)
	cc.Short = summary(c.about)
	cc.SetHelpFunc(func(*cobra.Command, []string) { c.printUsage(e.stdout) })
	cc.RunE = func(_ *cobra.Command, args []string) error {
		if err := c.bind(args, e.getenv); err != nil {
			return err
		}
		return body(c.positional)
	}
	return cc
}

// group returns a command made of subcommands ("credential add").
func (e *env) group(name string, aliases []string, subs ...*cobra.Command) *cobra.Command {
	cc := &cobra.Command{Use: name, Aliases: aliases, Args: cobra.ArbitraryArgs}
	cc.AddCommand(subs...)
	usage := func(w io.Writer) {
		var names []string
		for _, s := range cc.Commands() {
			names = append(names, s.Name())
		}
		fmt.Fprintf(w, "Usage: tokenkeeper %s %s [flags]\n\n", name, strings.Join(names, "|"))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, s := range cc.Commands() {
			also := ""
			if len(s.Aliases) > 0 {
				also = " (also " + strings.Join(s.Aliases, ", ") + ")"
			}
			fmt.Fprintf(tw, "  %s%s\t%s\n", s.Name(), also, s.Short)
		}
		tw.Flush()
		fmt.Fprintf(w, "\nRun 'tokenkeeper %s SUBCOMMAND --help' for its flags.\n", name)
	}
	cc.SetHelpFunc(func(*cobra.Command, []string) { usage(e.stdout) })
	cc.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			usage(e.stderr)
			return errUsageShown
		}
		if args[0] == "help" {
			usage(e.stdout)
			return nil
		}
		var names []string
		for _, s := range cc.Commands() {
			names = append(names, s.Name())
		}
		return usagef("unknown subcommand %q of %s%s; expected one of %s", args[0], name, suggest(cmd, args[0]), strings.Join(names, ", "))
	}
	return cc
}

func (e *env) cmdVersion(c *command) runFunc {
	c.describe("tokenkeeper version [--json]", "Prints the version of this binary.")
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		if *asJSON {
			return printJSON(e.stdout, map[string]string{"version": versionString()})
		}
		fmt.Fprintln(e.stdout, "tokenkeeper", versionString())
		return nil
	}
}
