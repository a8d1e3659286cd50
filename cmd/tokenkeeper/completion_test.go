package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// complete runs the hidden command the completion scripts call, and
// returns the candidates it prints (without their descriptions).
func complete(t *testing.T, env map[string]string, words ...string) []string {
	t.Helper()
	var out, errb syncBuffer
	err := run(context.Background(), append([]string{"tokenkeeper", "__complete"}, words...), func(k string) string { return env[k] },
		strings.NewReader(""), &out, &errb)
	if err != nil {
		t.Fatalf("__complete %q: %v %s", words, err, errb.String())
	}
	var got []string
	for _, l := range strings.Split(out.String(), "\n") {
		if l == "" || strings.HasPrefix(l, ":") {
			continue
		}
		got = append(got, strings.SplitN(l, "\t", 2)[0])
	}
	return got
}

// The completion scripts are valid for their shell, and what they ask
// for completes commands, subcommands, flags, flag values and names.
func TestCompletion(t *testing.T) {
	for _, sh := range shells {
		var out, errb syncBuffer
		err := run(context.Background(), []string{"tokenkeeper", "completion", sh}, func(string) string { return "" }, strings.NewReader(""), &out, &errb)
		if err != nil || !strings.Contains(out.String(), "__complete") {
			t.Fatalf("completion %s: %v %q", sh, err, errb.String())
		}
		path := filepath.Join(t.TempDir(), "tokenkeeper."+sh)
		if err := os.WriteFile(path, []byte(out.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.LookPath(sh); err != nil {
			if sh == "bash" {
				t.Fatal("bash is missing")
			}
			t.Logf("%s is not installed: its script is not syntax-checked", sh)
			continue
		}
		if b, err := exec.Command(sh, "-n", path).CombinedOutput(); err != nil {
			t.Errorf("%s -n on the %s script: %v\n%s", sh, sh, err, b)
		}
	}
	var out, errb syncBuffer
	if err := run(context.Background(), []string{"tokenkeeper", "completion", "powershell"}, func(string) string { return "" }, strings.NewReader(""), &out, &errb); err == nil || exitCode(err) != 2 {
		t.Errorf("completion of an unknown shell: %v", err)
	}

	hasAll := func(what string, got []string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%s: %q not among %q", what, w, got)
			}
		}
	}
	none := map[string]string{}
	hasAll("commands", complete(t, none, ""), "credential", "provider", "serve", "completion", "exec")
	hasAll("subcommands", complete(t, none, "credential", ""), "add", "list", "show", "update", "rm", "refresh", "events")
	hasAll("an alias's subcommands", complete(t, none, "cred", ""), "add", "list")
	hasAll("flags", complete(t, none, "credential", "add", "--"), "--token-url", "--client-secret-file", "--server", "--json")
	if got := complete(t, none, "credential", "add", "--"); slices.Contains(got, "--name") {
		t.Errorf("the hidden old --name is offered: %q", got)
	}
	hasAll("--grant-type values", complete(t, none, "credential", "add", "x", "--grant-type", ""), "client_credentials", "refresh_token")
	hasAll("--role of a key", complete(t, none, "apikey", "add", "x", "--role", ""), "admin", "consumer")
	hasAll("--log-level", complete(t, none, "serve", "--log-level", ""), "debug", "info", "warn", "error")
	hasAll("shells", complete(t, none, "completion", ""), "bash", "zsh", "fish")
	hasAll("help's commands", complete(t, none, "help", "cred"), "credential")
	hasAll("help's subcommands", complete(t, none, "help", "credential", ""), "add", "rm")

	// Names come from the broker the flags and the environment select.
	sb := startServe(t, nil, "--database", t.TempDir()+"/tk.db")
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	cli := cliEnv(env)
	if out, err := cli("s\n", "credential", "add", "payments", "--no-wait", "--token-url", "https://idp.example.com/token", "--client-id", "c", "--client-secret-file", "-"); err != nil {
		t.Fatalf("credential add: %v %s", err, out)
	}
	hasAll("credential names", complete(t, env, "credential", "show", ""), "payments")
	hasAll("credential names after --server", complete(t, map[string]string{"TOKENKEEPER_API_KEY": sb.key}, "token", "--server", sb.url, ""), "payments")
	hasAll("--credential of exec", complete(t, env, "exec", "--credential", ""), "payments")
	hasAll("provider names", complete(t, env, "provider", "show", ""), "payments") // the inline form made a provider named after it
	if got := complete(t, env, "credential", "show", "payments", ""); len(got) != 0 {
		t.Errorf("a second name is offered: %q", got)
	}
	if got := complete(t, map[string]string{"TOKENKEEPER_SERVER": "http://127.0.0.1:1", "TOKENKEEPER_API_KEY": "k"}, "credential", "show", ""); len(got) != 0 {
		t.Errorf("names without a broker: %q", got)
	}
}

// The bash script completes in a real bash, calling the binary; so does
// the fish one in fish.
func TestCompletionInShells(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: builds the binary")
	}
	bin := buildBinary(t, t.TempDir())
	// The script needs bash-completion's _get_comp_words_by_ref: the
	// package's, or a stand-in that splits COMP_WORDS the same way. The
	// test calls the completion function as bash would on a TAB.
	script := `if [ -r /usr/share/bash-completion/bash_completion ]; then
  source /usr/share/bash-completion/bash_completion
else
  _get_comp_words_by_ref() {
    cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}
    words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
  }
fi
compopt() { :; } # a builtin that works only inside a completion bash runs itself
source <("$TK" completion bash)
COMP_WORDS=(tokenkeeper credential sh); COMP_CWORD=2; COMP_LINE="tokenkeeper credential sh"; COMP_POINT=${#COMP_LINE}
__start_tokenkeeper tokenkeeper sh credential
echo "${COMPREPLY[*]}"
COMP_WORDS=(tokenkeeper credential add x --grant); COMP_CWORD=4; COMP_LINE="tokenkeeper credential add x --grant"; COMP_POINT=${#COMP_LINE}
__start_tokenkeeper tokenkeeper --grant x
echo "${COMPREPLY[*]}"`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "TK="+bin, "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, b)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "show") || !strings.HasPrefix(lines[1], "--grant-type") {
		t.Fatalf("bash completed %q; want show, then --grant-type", lines)
	}

	// fish completes from its script too, when it is installed.
	if _, err := exec.LookPath("fish"); err != nil {
		t.Log("fish is not installed")
		return
	}
	cmd = exec.Command("fish", "-c", `"$TK" completion fish | source; complete -C "tokenkeeper credential sh"; complete -C "tokenkeeper credential add x --grant-type "`)
	cmd.Env = append(os.Environ(), "TK="+bin, "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
	if b, err = cmd.CombinedOutput(); err != nil {
		t.Fatalf("fish: %v\n%s", err, b)
	}
	if got := string(b); !strings.HasPrefix(got, "show\t") || !strings.Contains(got, "\nclient_credentials\nrefresh_token") {
		t.Fatalf("fish completed %q", got)
	}
}
