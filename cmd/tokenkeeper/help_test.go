package main

import (
	"context"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// helpOf runs `tokenkeeper ARGS... --help`.
func helpOf(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb syncBuffer
	err = run(context.Background(), append(append([]string{"tokenkeeper"}, args...), "--help"), func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), err
}

var (
	// datedRE is a time as tables print it: date, time and zone.
	datedRE = regexp.MustCompile(`\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{3})? ([A-Z][A-Z0-9]*|[+-]\d{2,4})\b`)
	// usageLine finds a command listed in the main usage.
	usageLine = regexp.MustCompile(`(?m)^  ([a-z][a-z-]*)\s`)
	// flagLine is a flag in a command's usage.
	flagLine = regexp.MustCompile(`(?m)^  --([a-z][a-z0-9-]*)`)
	// readmeFlag is a long flag named in the README.
	readmeFlag = regexp.MustCompile(`(?:^|[\s(\x60'\[])--([a-z][a-z0-9-]*)`)
)

// allCommands returns every command of the tree run builds.
func allCommands() []*cobra.Command {
	return walkCommands((&env{ctx: context.Background(), getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard}).commands())
}

// walkCommands returns the commands under root, subcommands after their
// group, without hidden ones and cobra's own help command.
func walkCommands(root *cobra.Command) []*cobra.Command {
	var all []*cobra.Command
	var walk func(cc *cobra.Command)
	walk = func(cc *cobra.Command) {
		for _, sub := range cc.Commands() {
			if sub.Hidden || sub.Name() == "help" {
				continue
			}
			all = append(all, sub)
			walk(sub)
		}
	}
	walk(root)
	return all
}

// Every command and subcommand answers --help on standard output with
// exit 0, with its own usage and every flag it has; every command is in
// the main usage; every flag the README names exists.
func TestEveryCommandHelp(t *testing.T) {
	main, _, err := helpOf(t)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range usageLine.FindAllStringSubmatch(main, -1) {
		listed[m[1]] = true
	}
	all := allCommands()
	if len(all) < 40 {
		t.Fatalf("found only %d commands", len(all))
	}
	flags := map[string]bool{}
	for _, cc := range all {
		p := strings.Fields(cc.CommandPath())[1:]
		if len(p) == 1 && !listed[p[0]] && p[0] != "version" {
			t.Errorf("command %s is not in 'tokenkeeper --help'", p[0])
		}
		out, errs, err := helpOf(t, p...)
		if err != nil {
			t.Errorf("%v --help: %v (exit %d)", p, err, exitCode(err))
		}
		if !strings.HasPrefix(out, "Usage: tokenkeeper "+strings.Join(p, " ")) {
			t.Errorf("%v --help printed no usage of its own on standard output: %q (stderr: %q)", p, out, errs)
		}
		shown := map[string]bool{}
		for _, m := range flagLine.FindAllStringSubmatch(out, -1) {
			shown[m[1]] = true
		}
		cc.Flags().VisitAll(func(f *pflag.Flag) {
			flags[f.Name] = true
			if !f.Hidden && f.Name != "help" && !shown[f.Name] {
				t.Errorf("%v --help does not list --%s", p, f.Name)
			}
		})
	}
	t.Logf("%d commands and subcommands answer --help; %d flags", len(all), len(flags))

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// git config --global; pg_ctlcluster --skip-systemctl-redirect (in bench
	// chaos's usage); cobra adds --help to every command as it runs.
	notOurs := map[string]bool{"global": true, "skip-systemctl-redirect": true, "help": true}
	for _, m := range readmeFlag.FindAllStringSubmatch(string(readme), -1) {
		if !flags[m[1]] && !notOurs[m[1]] {
			t.Errorf("the README names --%s, which no command has", m[1])
		}
	}
}

// Errors name the flags the user typed, not the API's fields.
func TestErrorsNameFlags(t *testing.T) {
	sb := startServe(t, nil, "--database", t.TempDir()+"/tk.db")
	cli := cliEnv(map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key})
	out, err := cli("", "credential", "add", "x", "--token-url", "ftp://nowhere/t", "--client-id", "a", "--client-secret", "b")
	if err == nil || !strings.Contains(err.Error(), "--token-url") || strings.Contains(err.Error(), "token_url") {
		t.Fatalf("a bad --token-url: %v %s", err, out)
	}
	// apikey add and rm are the create and revoke of the other nouns.
	if out, err := cli("", "apikey", "add", "second", "--role", "admin"); err != nil {
		t.Fatalf("apikey add: %v %s", err, out)
	}
	// show finds one in the list, by id or name.
	if out, err := cli("", "apikey", "show", "second"); err != nil || !strings.Contains(out, "role:") || !strings.Contains(out, "admin") || !datedRE.MatchString(out) {
		t.Fatalf("apikey show: %v %s", err, out)
	}
	if out, err := cli("", "apikey", "show", "nobody"); err == nil || !strings.Contains(err.Error(), `no API key "nobody"`) {
		t.Fatalf("apikey show of an unknown key: %v %s", err, out)
	}
	if out, err := cli("", "apikey", "revoke", "second"); err != nil || !strings.Contains(out, "Revoked") {
		t.Fatalf("apikey revoke (the alias of rm): %v %s", err, out)
	}
	// A one-word API field that starts the broker's message is the flag.
	if out, err := cli("", "apikey", "add", "third", "--role", "boss"); err == nil || !strings.Contains(err.Error(), "--role must be admin or consumer") {
		t.Fatalf("a bad --role: %v %s", err, out)
	}
	// The old --name still works, with a warning; both forms at once do not.
	if out, err := cli("", "apikey", "add", "--name", "fourth", "--role", "admin"); err != nil || !strings.Contains(out, "warning: --name is the old form: write tokenkeeper apikey add fourth") {
		t.Fatalf("apikey add --name: %v %s", err, out)
	}
	for _, args := range [][]string{{"apikey", "add", "x", "--name", "y"}, {"apikey", "add", "x", "y"}, {"apikey", "add"}, {"credential", "show"}} {
		if out, err := cli("", args...); err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "tokenkeeper "+strings.Join(args[:2], " ")) {
			t.Errorf("%v: %v (exit %d) %s; want a usage error naming the command", args, err, exitCode(err), out)
		}
	}
	// A mistyped flag gets the likely one; Go's one-dash form, the two-dash one.
	for args, want := range map[string]string{
		"credential add x --tokn-url u": "unknown flag: --tokn-url (did you mean --token-url? see tokenkeeper credential add --help)",
		"credential list -json":         "unknown flag -json: write --json (two dashes)",
		"serve --foo":                   "unknown flag: --foo (see tokenkeeper serve --help)",
	} {
		if _, err := cli("", strings.Fields(args)...); err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", args, err, want)
		}
	}
	// Global flags go before the command or after it.
	keyOnly := cliEnv(map[string]string{"TOKENKEEPER_API_KEY": sb.key})
	for _, args := range [][]string{
		{"--server", sb.url, "--json", "apikey", "list"},
		{"--server=" + sb.url, "apikey", "list", "--json"},
		{"apikey", "list", "--json", "--server", sb.url},
	} {
		out, err := keyOnly("", args...)
		if err != nil || !strings.HasPrefix(strings.TrimSpace(out), "{") || !strings.Contains(out, `"api_keys"`) {
			t.Errorf("%v: %v %s", args, err, out)
		}
	}
	if _, err := keyOnly("", "--server", sb.url, "serve"); err == nil || !strings.Contains(err.Error(), "unknown flag: --server (see tokenkeeper serve --help)") {
		t.Errorf("--server before serve, which has none: %v", err)
	}
	if _, err := keyOnly("", "credentail", "list"); err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "did you mean credential?") {
		t.Errorf("a mistyped command: %v", err)
	}
	if _, err := keyOnly("", "credential", "lsit"); err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "did you mean list?") {
		t.Errorf("a mistyped subcommand: %v", err)
	}
	// Tables show dates with their time zone.
	if out, err := cli("", "apikey", "list"); err != nil || !datedRE.MatchString(out) {
		t.Fatalf("apikey list without a dated, zoned time: %v\n%s", err, out)
	}
	// A subcommand group's help is on standard output too.
	if out, _, err := helpOf(t, "credential"); err != nil || !strings.Contains(out, "add|") {
		t.Fatalf("credential --help: %v %q", err, out)
	}
	// 'help COMMAND' is COMMAND --help; an unknown command is a usage error.
	var hout, herr syncBuffer
	if err := run(context.Background(), []string{"tokenkeeper", "help", "credential", "add"}, func(string) string { return "" }, nil, &hout, &herr); err != nil ||
		!strings.HasPrefix(hout.String(), "Usage: tokenkeeper credential add NAME") {
		t.Fatalf("help credential add: %v %q", err, hout.String())
	}
	for _, args := range [][]string{{"help", "nonexistent"}, {"help", "credential", "bogus"}} {
		if err := run(context.Background(), append([]string{"tokenkeeper"}, args...), func(string) string { return "" }, nil, &hout, &herr); err == nil || exitCode(err) != 2 {
			t.Errorf("%v: %v; want a usage error", args, err)
		}
	}
	if out, _, _ := helpOf(t); !strings.Contains(out, "chaos") {
		t.Fatal("bench chaos is not in the help")
	}
}
