package main

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
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
	// dispatched finds the command names of run's switch in run.go.
	dispatched = regexp.MustCompile(`(?m)^\tcase ((?:"[a-z-]+"(?:, )?)+):`)
	// usageLine finds a command listed in the main usage.
	usageLine = regexp.MustCompile(`(?m)^  ([a-z][a-z-]*)\s`)
	// groupUsage is the usage line of a command with subcommands.
	groupUsage = regexp.MustCompile(`^Usage: tokenkeeper ([a-z-]+) ([a-z|-]+) \[flags\]`)
	// flagLine is a flag in a command's usage.
	flagLine = regexp.MustCompile(`(?m)^  --([a-z][a-z0-9-]*)`)
	// readmeFlag is a long flag named in the README.
	readmeFlag = regexp.MustCompile(`(?:^|[\s(\x60'\[])--([a-z][a-z0-9-]*)`)
)

// Every command and subcommand answers --help on standard output with
// exit 0; every command run dispatches is in the main usage; every flag the
// README names exists on some command.
func TestEveryCommandHelp(t *testing.T) {
	src, err := os.ReadFile("run.go")
	if err != nil {
		t.Fatal(err)
	}
	main, _, err := helpOf(t)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range usageLine.FindAllStringSubmatch(main, -1) {
		listed[m[1]] = true
	}
	var commands []string
	for _, m := range dispatched.FindAllStringSubmatch(string(src), -1) {
		names := strings.Split(strings.ReplaceAll(m[1], `"`, ""), ", ")
		if names[0] == "-h" { // the main help itself
			continue
		}
		if !slices.ContainsFunc(names, func(n string) bool { return listed[n] }) && names[0] != "version" {
			t.Errorf("command %s is dispatched but not in 'tokenkeeper --help'", names[0])
		}
		commands = append(commands, names[0])
	}
	if len(commands) < 15 {
		t.Fatalf("found only %d commands in run.go: %v", len(commands), commands)
	}

	flags := map[string]bool{}
	checked := 0
	check := func(args ...string) string {
		t.Helper()
		out, errs, err := helpOf(t, args...)
		if err != nil {
			t.Errorf("%v --help: %v (exit %d)", args, err, exitCode(err))
		}
		if strings.TrimSpace(out) == "" {
			t.Errorf("%v --help printed nothing on standard output (stderr: %q)", args, errs)
		}
		for _, m := range flagLine.FindAllStringSubmatch(out, -1) {
			flags[m[1]] = true
		}
		checked++
		return out
	}
	for _, cmd := range commands {
		out := check(cmd)
		m := groupUsage.FindStringSubmatch(out)
		if m == nil {
			continue
		}
		for _, sub := range strings.Split(m[2], "|") {
			check(cmd, sub)
		}
	}
	t.Logf("%d commands and subcommands answer --help; %d flags", checked, len(flags))

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
