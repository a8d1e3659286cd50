package main

import (
	"context"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
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

// commandPaths returns the words of every command of the tree run builds,
// subcommands after their group, without cobra's own help command.
func commandPaths() [][]string {
	var paths [][]string
	var walk func(prefix []string, cc *cobra.Command)
	walk = func(prefix []string, cc *cobra.Command) {
		for _, sub := range cc.Commands() {
			if sub.Hidden || sub.Name() == "help" {
				continue
			}
			p := append(slices.Clone(prefix), sub.Name())
			paths = append(paths, p)
			walk(p, sub)
		}
	}
	walk(nil, (&env{ctx: context.Background(), getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard}).commands())
	return paths
}

// Every command and subcommand answers --help on standard output with
// exit 0; every command is in the main usage; every flag the README names
// exists on some command.
func TestEveryCommandHelp(t *testing.T) {
	main, _, err := helpOf(t)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range usageLine.FindAllStringSubmatch(main, -1) {
		listed[m[1]] = true
	}
	paths := commandPaths()
	if len(paths) < 40 {
		t.Fatalf("found only %d commands: %v", len(paths), paths)
	}
	flags := map[string]bool{}
	for _, p := range paths {
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
		for _, m := range flagLine.FindAllStringSubmatch(out, -1) {
			flags[m[1]] = true
		}
	}
	t.Logf("%d commands and subcommands answer --help; %d flags", len(paths), len(flags))

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	notOurs := map[string]bool{"global": true, "help": true} // git config --global; every command's --help
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
	out, err := cli("", "credential", "add", "--name", "x", "--token-url", "ftp://nowhere/t", "--client-id", "a", "--client-secret", "b")
	if err == nil || !strings.Contains(err.Error(), "--token-url") || strings.Contains(err.Error(), "token_url") {
		t.Fatalf("a bad --token-url: %v %s", err, out)
	}
	// apikey add and rm are the create and revoke of the other nouns.
	if out, err := cli("", "apikey", "add", "--name", "second", "--role", "admin"); err != nil {
		t.Fatalf("apikey add: %v %s", err, out)
	}
	if out, err := cli("", "apikey", "rm", "second"); err != nil || !strings.Contains(out, "Revoked") {
		t.Fatalf("apikey rm: %v %s", err, out)
	}
	// Tables show dates with their time zone.
	if out, err := cli("", "apikey", "list"); err != nil || !datedRE.MatchString(out) {
		t.Fatalf("apikey list without a dated, zoned time: %v\n%s", err, out)
	}
	// A subcommand group's help is on standard output too.
	if out, _, err := helpOf(t, "credential"); err != nil || !strings.Contains(out, "add|") {
		t.Fatalf("credential --help: %v %q", err, out)
	}
	if out, _, _ := helpOf(t); !strings.Contains(out, "chaos") {
		t.Fatal("bench chaos is not in the help")
	}
}
