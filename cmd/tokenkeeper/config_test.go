package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// The README's configuration table sits between these lines.
const (
	configBegin = "<!-- BEGIN configuration table: written by TestConfigurationTable from the flag definitions; TOKENKEEPER_UPDATE_README=1 go test -run TestConfigurationTable ./cmd/tokenkeeper/ rewrites it -->"
	configEnd   = "<!-- END configuration table -->"
)

// envUse is one flag's use of an environment variable.
type envUse struct {
	command string // "credential add"
	flag    *pflag.Flag
	server  bool // the command talks to a broker (has --server)
}

// envUses returns every variable of every flag, in the order of the
// command tree, with the flags that read it.
func envUses() (names []string, uses map[string][]envUse) {
	e := &env{ctx: context.Background(), getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard}
	root := e.commands()
	uses = map[string][]envUse{}
	for _, cc := range walkCommands(root) {
		c := e.defined[cc]
		if c == nil {
			continue
		}
		c.visibleFlags(func(f *pflag.Flag) {
			v := c.envVar(f.Name)
			if v == "" {
				return
			}
			if _, ok := uses[v]; !ok {
				names = append(names, v)
			}
			uses[v] = append(uses[v], envUse{strings.TrimPrefix(cc.CommandPath(), "tokenkeeper "), f, c.fs.Lookup("server") != nil})
		})
	}
	return names, uses
}

// configurationTable returns the README's table of variables.
func configurationTable() string {
	names, uses := envUses()
	var b strings.Builder
	b.WriteString("\n| variable | flag | commands | default | meaning |\n|---|---|---|---|---|\n")
	for _, v := range names {
		u := uses[v]
		var cmds []string
		allClients := len(u) >= 10
		for _, x := range u {
			cmds = append(cmds, x.command)
			allClients = allClients && x.server
		}
		where := strings.Join(cmds, ", ")
		if allClients {
			where = fmt.Sprintf("every command that talks to a broker (%d)", len(u))
		}
		// The meaning most of them give.
		count := map[string]int{}
		meaning := ""
		for _, x := range u {
			if count[x.flag.Usage]++; count[x.flag.Usage] > count[meaning] {
				meaning = x.flag.Usage
			}
		}
		fmt.Fprintf(&b, "| `%s` | `--%s` | %s | %s | %s |\n", v, u[0].flag.Name, where, defaultText(u[0].flag), cell(meaning))
	}
	for _, o := range envOnly {
		fmt.Fprintf(&b, "| `%s` | — | %s | — | %s |\n", o.name, o.commands, o.meaning)
	}
	return b.String()
}

// defaultText is a flag's default as the table shows it.
func defaultText(f *pflag.Flag) string {
	switch d := f.DefValue; {
	case d == "" || d == "[]":
		return "—"
	case d == "false":
		return "off"
	case d == "true":
		return "on"
	case f.Value.Type() == "duration":
		dur, _ := time.ParseDuration(d)
		s := dur.String() // 1h0m0s: 1h
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return "`" + s + "`"
	default:
		return "`" + d + "`"
	}
}

// cell makes a usage text fit a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// The README's configuration table lists exactly the variables the flags
// read, and those that are no flag's; a variable two commands share means
// the same to both; every TOKENKEEPER_ variable the README or the code
// reads exists.
func TestConfigurationTable(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	i, j := strings.Index(readme, configBegin), strings.Index(readme, configEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no configuration table between %q and %q", configBegin, configEnd)
	}
	want := configurationTable()
	if got := readme[i+len(configBegin) : j]; got != want {
		if os.Getenv("TOKENKEEPER_UPDATE_README") == "1" {
			if err := os.WriteFile("../../README.md", []byte(readme[:i+len(configBegin)]+want+readme[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Log("rewrote the configuration table of README.md")
		} else {
			t.Errorf("README.md's configuration table is not the flag definitions'; rewrite it with\n  TOKENKEEPER_UPDATE_README=1 go test -run TestConfigurationTable ./cmd/tokenkeeper/\nwant:\n%s", want)
		}
	}

	// No collision: a variable read by several commands is one flag with
	// one meaning. The agent documents --server and --api-key its own way
	// (its configuration file has them too), for the same broker and key.
	names, uses := envUses()
	sameMeaning := map[string]bool{"TOKENKEEPER_SERVER": true, "TOKENKEEPER_API_KEY": true}
	for _, v := range names {
		for _, u := range uses[v][1:] {
			first := uses[v][0]
			if u.flag.Name != first.flag.Name || u.flag.Value.Type() != first.flag.Value.Type() ||
				(u.flag.Usage != first.flag.Usage && !sameMeaning[v]) {
				t.Errorf("$%s means --%s %q to %s but --%s %q to %s", v, first.flag.Name, first.flag.Usage, first.command,
					u.flag.Name, u.flag.Usage, u.command)
			}
		}
	}

	// Every variable named in the README or read by the code exists.
	known := map[string]bool{}
	for _, v := range names {
		known[v] = true
	}
	for _, o := range envOnly {
		known[o.name] = true
	}
	notConfig := map[string]bool{ // set for others, or for the tests
		"TOKENKEEPER_TOKEN": true, "TOKENKEEPER_SINK_PATH": true, "TOKENKEEPER_SINK_CREDENTIAL": true, "TOKENKEEPER_SINK_EVENT": true,
		"TOKENKEEPER_TEST_DATABASE_URL": true, "TOKENKEEPER_UPDATE_README": true, "TOKENKEEPER_SCREENSHOTS": true,
	}
	varRE := regexp.MustCompile(`\bTOKENKEEPER_[A-Z0-9_]*[A-Z0-9]\b`)
	for _, v := range varRE.FindAllString(readme, -1) {
		if !known[v] && !notConfig[v] && !strings.HasSuffix(v, "_") {
			t.Errorf("the README names $%s, which nothing reads", v)
		}
	}
	getenvRE := regexp.MustCompile(`getenv\("(TOKENKEEPER_[A-Z0-9_]+)"\)`)
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range getenvRE.FindAllStringSubmatch(string(src), -1) {
			if !known[m[1]] {
				t.Errorf("%s reads $%s, which is not in the README's table (add it to envOnly)", f, m[1])
			}
		}
	}
	if !slices.Contains(names, "TOKENKEEPER_TESTIDP_ADDR") || slices.Contains(names, "TOKENKEEPER_DEMO_ADDR") == false {
		t.Errorf("testidp and demo do not have variables of their own: %v", names)
	}
}

// The tools read their own variables, never the broker's: a broker's
// environment (a bad $TOKENKEEPER_ADDR, $TOKENKEEPER_LIFETIME, a master key
// ...) changes neither the demo nor testidp.
func TestToolsIgnoreBrokerVariables(t *testing.T) {
	broker := map[string]string{
		"TOKENKEEPER_ADDR": "not an address", "TOKENKEEPER_LIFETIME": "soon", "TOKENKEEPER_DURATION": "soon",
		"TOKENKEEPER_CONCURRENCY": "many", "TOKENKEEPER_LOG_LEVEL": "loud", "TOKENKEEPER_DATABASE": "/nonexistent/tk.db",
		"TOKENKEEPER_MASTER_KEY": "not base64", "TOKENKEEPER_KEEP": "true",
	}
	with := func(own map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := own[k]; ok {
				return v
			}
			return broker[k]
		}
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	// 6 s: the demo sets up its credentials within its --duration, which
	// takes a few seconds on a loaded machine; tokens of 10 s need no
	// refresh in time for the demo's consumer meanwhile.
	var out, errb syncBuffer
	err := run(context.Background(), []string{"tokenkeeper", "demo"},
		with(map[string]string{"TOKENKEEPER_DEMO_DURATION": "6s", "TOKENKEEPER_DEMO_LIFETIME": "10s"}), strings.NewReader(""), &out, &errb)
	if err != nil || !strings.Contains(out.String(), "payments-api") {
		t.Fatalf("demo in a broker's environment: %v\n%s%s", err, out.String(), errb.String())
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the demo followed $TOKENKEEPER_KEEP: %d entries left", len(left))
	}

	ctx, cancel := context.WithCancel(context.Background())
	var idpOut, idpErr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"tokenkeeper", "testidp", "--client", "app:s"},
			with(map[string]string{"TOKENKEEPER_TESTIDP_ADDR": "127.0.0.1:0", "TOKENKEEPER_TESTIDP_LIFETIME": "7s"}), nil, &idpOut, &idpErr)
	}()
	iss := waitFor(t, "the issuer line", 10*time.Second, func() string {
		if m := issuerRE.FindStringSubmatch(idpOut.String()); m != nil {
			return m[1]
		}
		return ""
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("testidp: %v %s", err, idpErr.String())
	}
	if strings.HasSuffix(iss, ":9090") {
		t.Errorf("testidp ignored $TOKENKEEPER_TESTIDP_ADDR: %s", iss)
	}
}
