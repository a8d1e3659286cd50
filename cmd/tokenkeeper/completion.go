package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// shells are the shells 'tokenkeeper completion' writes scripts for.
var shells = []string{"bash", "zsh", "fish"}

func (e *env) cmdCompletion(c *command) runFunc {
	c.describe("tokenkeeper completion bash|zsh|fish",
		`Prints the shell completion script of tokenkeeper: commands, subcommands,
flags, the values of flags that take one of a few words, and the names of
credentials and providers, which it asks the broker for (the one --server
and $TOKENKEEPER_SERVER select, with $TOKENKEEPER_API_KEY or your login). The
script asks this binary what to complete (the hidden command __complete), so
it stays right as commands change.

  bash:  source <(tokenkeeper completion bash)      # in ~/.bashrc; needs bash-completion
  zsh:   tokenkeeper completion zsh > "${fpath[1]}/_tokenkeeper"
  fish:  tokenkeeper completion fish > ~/.config/fish/completions/tokenkeeper.fish`)
	c.cc.ValidArgs = shells
	return func(args []string) error {
		pos, err := c.args(1, "one shell: "+strings.Join(shells, ", "))
		if err != nil {
			return err
		}
		root := c.cc.Root()
		switch pos[0] {
		case "bash":
			return root.GenBashCompletionV2(e.stdout, true)
		case "zsh":
			return root.GenZshCompletion(e.stdout)
		case "fish":
			return root.GenFishCompletion(e.stdout, true)
		}
		return usagef("tokenkeeper completion: unknown shell %q; expected one of %s", pos[0], strings.Join(shells, ", "))
	}
}

// completeWords makes flag name of c complete to words, its only values.
func (c *command) completeWords(name string, words ...string) {
	_ = c.cc.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(words, cobra.ShellCompDirectiveNoFileComp))
}

// nameList is where the broker lists the names of one kind of thing.
type nameList struct{ path, listKey, field string }

var (
	credentialNames = nameList{"/v1/credentials", "credentials", "name"}
	providerNames   = nameList{"/v1/providers", "providers", "name"}
)

// flagValues are the words some flags take, for completion.
var flagValues = map[string][]string{
	"grant-type": {"client_credentials", "refresh_token"},
	"auth-style": {"header", "body"},
	"log-level":  {"debug", "info", "warn", "error"},
	"log-format": {"text", "json"},
	"kind":       {"refresh", "operator"},
	"signal":     {"TERM", "KILL"},
	"template":   {"raw", "header", "json", "env:"},
	"on-expiry":  {"remove", "empty"},
}

// completions registers the completion of c's flags: the words of
// flagValues, and the names of credentials and providers for --credential
// and --provider (asked of the broker).
func (e *env) completions(c *command) {
	for name, words := range flagValues {
		if c.fs.Lookup(name) != nil {
			c.completeWords(name, words...)
		}
	}
	for name, l := range map[string]nameList{"credential": credentialNames, "provider": providerNames} {
		if c.fs.Lookup(name) != nil && c.fs.Lookup("server") != nil {
			_ = c.cc.RegisterFlagCompletionFunc(name, func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return e.brokerNames(c, l, toComplete), cobra.ShellCompDirectiveNoFileComp
			})
		}
	}
}

// namesArg makes the first argument of cc (a leaf) complete to the names
// of l.
func (e *env) namesArg(cc *cobra.Command, l nameList) *cobra.Command {
	c := e.defined[cc]
	cc.ValidArgsFunction = func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return e.brokerNames(c, l, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
	return cc
}

// brokerNames asks the broker that c's flags and environment select for
// the names of l that start with prefix, for at most two seconds; without
// an answer, none.
func (e *env) brokerNames(c *command, l nameList, prefix string) []cobra.Completion {
	if err := c.bind(nil, e.getenv); err != nil {
		return nil
	}
	ao := apiOptions{server: c.flagValue("server"), apiKey: c.flagValue("api-key"), insecure: c.flagValue("allow-insecure-server") == "true"}
	if err := (&apiKeyFileOption{path: c.flagValue("api-key-file")}).apply(&ao); err != nil {
		return nil
	}
	cl, err := e.apiClient(&ao)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
	defer cancel()
	var out map[string][]map[string]any
	if err := cl.do(ctx, "GET", l.path, nil, &out); err != nil {
		return nil
	}
	var names []cobra.Completion
	for _, it := range out[l.listKey] {
		if s, ok := it[l.field].(string); ok && strings.HasPrefix(s, prefix) {
			names = append(names, s)
		}
	}
	return names
}
