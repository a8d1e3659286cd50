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

Usage: tokenkeeper [--server URL] [--json] COMMAND [ARGS] [flags]

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
  apikey       add | list | show | rm (also create | revoke)
  keys         rotate: add a data key, re-seal every secret, rotate the JWT signing key;
               rotate-master: re-wrap the data keys under a new master key (offline)
  user         add | list | show | rm | passwd | revoke-sessions: people who log in (admin or viewer)
  client       add | list | show | rm | rotate-secret: services using /oauth2/token
  audit        the audit log
  webhook      add | list | show | rm | test | deliveries: signed events to URLs

Programs without tokenkeeper code (--server, --api-key):
  agent          keep files fresh with tokens (config file or flags; SIGHUP reloads)
  exec           run a command with a token in its environment
  git-credential a git credential helper answering with a credential's token

Tools:
  testidp      run the OAuth2 test authorization server
  bench        refresh | read | chaos: measure the broker (chaos: kill replicas under load)
  completion   bash | zsh | fish: the shell completion script
  version      print the version

Run 'tokenkeeper COMMAND --help' for a command's flags. The flags --server, --api-key,
--json, --log-level and --log-format may also come before the command.
`

func init() {
	// Subcommands in the order commands() adds them: add, list, show,
	// update, rm, then the others.
	cobra.EnableCommandSorting = false
}

// run is the whole program: main only calls it.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := &env{ctx: ctx, getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	root := e.commands()
	if len(args) > 0 {
		args = args[1:]
	}
	root.SetArgs(moveGlobalFlags(root, args))
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
	root.SetHelpCommand(e.helpCommand(root))
	root.AddCommand(
		e.leaf("version", e.cmdVersion),
		e.leaf("completion", e.cmdCompletion),
		e.leaf("serve", e.cmdServe),
		e.leaf("init", e.cmdInit),
		e.leaf("migrate", e.cmdMigrate),
		e.leaf("demo", e.cmdDemo),
		e.leaf("testidp", e.cmdTestIDP),
		e.group("credential", []string{"credentials", "cred"}, "grants of a provider whose tokens the broker keeps fresh",
			e.leaf("add", e.cmdCredentialAdd),
			e.leaf("list", e.cmdCredentialList),
			e.namesArg(e.leaf("show", e.cmdCredentialShow), credentialNames),
			e.namesArg(e.leaf("update", e.cmdCredentialUpdate), credentialNames),
			e.namesArg(e.leaf("rm", e.cmdRemove(removable{"credential", "/v1/credentials", "the credential name",
				"tokenkeeper credential rm NAME", "Deletes a credential, its secrets and its events."})), credentialNames),
			e.namesArg(e.leaf("refresh", e.cmdCredentialRefresh), credentialNames),
			e.namesArg(e.leaf("events", e.cmdCredentialEvents), credentialNames)),
		e.group("provider", []string{"providers"}, "OAuth clients shared by credentials",
			e.leaf("add", e.cmdProviderAdd),
			e.leaf("list", e.cmdProviderList),
			e.namesArg(e.leaf("show", e.cmdProviderShow), providerNames),
			e.namesArg(e.leaf("update", e.cmdProviderUpdate), providerNames),
			e.namesArg(e.leaf("rm", e.cmdRemove(removable{"provider", "/v1/providers", "the provider name",
				"tokenkeeper provider rm NAME", "Deletes a provider that no credential uses."})), providerNames),
			e.leaf("presets", e.cmdProviderPresets)),
		e.namesArg(e.leaf("connect", e.cmdConnect), providerNames),
		e.namesArg(e.leaf("token", e.cmdToken), credentialNames),
		e.leaf("login", e.cmdLogin),
		e.leaf("logout", e.cmdLogout),
		e.leaf("whoami", e.cmdWhoami),
		e.group("apikey", []string{"apikeys"}, "API keys of services and admins",
			e.leaf("add", e.cmdAPIKeyCreate, "create"), // the verbs of the other nouns
			e.leaf("list", e.cmdAPIKeyList),
			e.leaf("show", e.cmdShowListed(listedThing{"API key", "/v1/apikeys", "api_keys", []string{"id", "name"}},
				"tokenkeeper apikey show ID_OR_NAME [--json]")),
			e.leaf("rm", e.cmdAPIKeyRevoke, "revoke")),
		e.group("user", []string{"users"}, "people who log in (admin or viewer)",
			e.leaf("add", e.cmdUserAdd),
			e.leaf("list", e.cmdUserList),
			e.leaf("show", e.cmdShowListed(listedThing{"user", "/v1/users", "users", []string{"username"}},
				"tokenkeeper user show NAME [--json]")),
			e.leaf("rm", e.cmdRemove(removable{"user", "/v1/users", "the user name",
				"tokenkeeper user rm NAME", "Deletes a user and ends all its sessions."})),
			e.leaf("passwd", e.cmdUserPasswd),
			e.leaf("revoke-sessions", e.cmdUserRevokeSessions)),
		e.group("client", []string{"clients"}, "service clients of the broker's /oauth2/token",
			e.leaf("add", e.cmdClientAdd),
			e.leaf("list", e.cmdClientList),
			e.leaf("show", e.cmdShowListed(listedThing{"service client", "/v1/clients", "clients", []string{"client_id"}},
				"tokenkeeper client show CLIENT_ID [--json]")),
			e.leaf("rm", e.cmdRemove(removable{"client", "/v1/clients", "the client id",
				"tokenkeeper client rm CLIENT_ID", "Deletes a service client."})),
			e.leaf("rotate-secret", e.cmdClientRotate)),
		e.leaf("audit", e.cmdAudit),
		e.leaf("agent", e.cmdAgent),
		e.leaf("exec", e.cmdExec),
		e.leaf("git-credential", e.cmdGitCredential),
		e.group("webhook", []string{"webhooks"}, "signed events to URLs",
			e.leaf("add", e.cmdWebhookAdd),
			e.leaf("list", e.cmdWebhookList),
			e.leaf("show", e.cmdShowListed(listedThing{"webhook", "/v1/webhooks", "webhooks", []string{"id", "url"}},
				"tokenkeeper webhook show ID_OR_URL [--json]")),
			e.leaf("rm", e.cmdRemove(removable{"webhook", "/v1/webhooks", "the webhook's id",
				"tokenkeeper webhook rm ID", "Removes a webhook endpoint and its pending deliveries and log."})),
			e.leaf("test", e.cmdWebhookTest),
			e.leaf("deliveries", e.cmdWebhookDeliveries)),
		e.group("admin", nil, "offline recovery: a new admin API key",
			e.leaf("recover", e.cmdAdminRecover)),
		e.group("keys", nil, "rotate the data and signing keys, or the master key",
			e.leaf("rotate", e.cmdKeysRotate),
			e.leaf("rotate-master", e.cmdKeysRotateMaster)),
		e.group("bench", nil, "measure the broker",
			e.leaf("refresh", e.cmdBenchRefresh),
			e.leaf("read", e.cmdBenchRead),
			e.leaf("scale", e.cmdBenchScale),
			hidden(e.leaf("read-load", e.cmdBenchReadLoad)),
			hidden(e.leaf("bare-handler", e.cmdBenchBareHandler)),
			e.leaf("chaos", e.cmdBenchChaos)),
	)
	return root
}

// helpCommand is 'tokenkeeper help [COMMAND...]': a command's help, as
// --help prints it; an unknown command is a usage error (cobra's own help
// command prints the main usage for it).
func (e *env) helpCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help",
		Short: "the help of a command, as COMMAND --help prints it",
		Args:  cobra.ArbitraryArgs,
		RunE: func(_ *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return usagef("help: unknown command %q; run 'tokenkeeper --help' for the list", strings.Join(args, " "))
			}
			return target.Help()
		},
		ValidArgsFunction: func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			target, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []cobra.Completion
			for _, sub := range target.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					names = append(names, sub.Name())
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
	}
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

// globalFlags may come before the command ("tokenkeeper --json credential
// list") as well as after it: the name, and whether it takes a value.
// Each is still a flag of the commands that have it; one given before a
// command that does not have it is an unknown flag of that command.
var globalFlags = map[string]bool{
	"server": true, "api-key": true, "api-key-file": true, "allow-insecure-server": false,
	"login-password-stdin": false, "json": false, "log-level": true, "log-format": true,
}

// moveGlobalFlags moves the global flags that precede the command to just
// after the command's name, where cobra parses the command's flags (and
// before a "--" that ends them).
func moveGlobalFlags(root *cobra.Command, args []string) []string {
	i := 0
	for i < len(args) {
		name, _, hasValue := strings.Cut(strings.TrimPrefix(args[i], "--"), "=")
		takesValue, ok := globalFlags[name]
		if !ok || !strings.HasPrefix(args[i], "--") {
			break
		}
		i++
		if takesValue && !hasValue && i < len(args) {
			i++
		}
	}
	if i == 0 {
		return args
	}
	lead, rest := args[:i], args[i:]
	cmd, _, err := root.Find(rest)
	if err != nil || cmd == root {
		return args // cobra reports it
	}
	depth := strings.Count(cmd.CommandPath(), " ")
	if depth > len(rest) {
		return args
	}
	out := make([]string, 0, len(args))
	out = append(out, rest[:depth]...)
	out = append(out, lead...)
	return append(out, rest[depth:]...)
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
	cmd            *command // the command that runs
	defined        map[*cobra.Command]*command
}

// leaf returns a command that runs: define declares its flags, and the
// body it returns runs once cobra has parsed the command line and bind has
// read the environment.
// hidden leaves cc out of the help and completions: a command that other
// commands run.
func hidden(cc *cobra.Command) *cobra.Command {
	cc.Hidden = true
	return cc
}

func (e *env) leaf(name string, define defineFunc, aliases ...string) *cobra.Command {
	cc := &cobra.Command{Use: name, Aliases: aliases, Args: cobra.ArbitraryArgs,
		ValidArgsFunction: cobra.NoFileCompletions} // names, not files, unless the command says otherwise
	c := &command{cc: cc, fs: cc.Flags(), stderr: e.stderr}
	body := define(c)
	e.completions(c)
	if e.defined == nil {
		e.defined = map[*cobra.Command]*command{}
	}
	e.defined[cc] = c
	cc.Short = summary(c.about)
	cc.SetHelpFunc(func(*cobra.Command, []string) { c.printUsage(e.stdout) })
	cc.RunE = func(_ *cobra.Command, args []string) error {
		if err := c.bind(args, e.getenv); err != nil {
			return err
		}
		e.cmd = c
		return body(c.positional)
	}
	return cc
}

// group returns a command made of subcommands ("credential add").
func (e *env) group(name string, aliases []string, short string, subs ...*cobra.Command) *cobra.Command {
	cc := &cobra.Command{Use: name, Aliases: aliases, Short: short, Args: cobra.ArbitraryArgs}
	cc.AddCommand(subs...)
	// The subcommands a person runs: not the hidden ones.
	shown := func() []*cobra.Command {
		var out []*cobra.Command
		for _, s := range cc.Commands() {
			if !s.Hidden {
				out = append(out, s)
			}
		}
		return out
	}
	usage := func(w io.Writer) {
		var names []string
		for _, s := range shown() {
			names = append(names, s.Name())
		}
		fmt.Fprintf(w, "Usage: tokenkeeper %s %s [flags]\n\n", name, strings.Join(names, "|"))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, s := range shown() {
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
		for _, s := range shown() {
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
