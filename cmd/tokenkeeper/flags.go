package main

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// errUsageShown reports that the usage text was already printed.
var errUsageShown = errors.New("usage shown")

// exitCode maps an error to the process exit status: 2 for usage errors,
// a command's own status for exec.
func exitCode(err error) int {
	var es exitStatus
	if errors.As(err, &es) {
		return int(es)
	}
	var ue *usageError
	if errors.Is(err, errUsageShown) || errors.As(err, &ue) {
		return 2
	}
	return 1
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// envName returns the environment variable of a flag: TOKENKEEPER_ and the
// flag name in upper case with '-' as '_'.
func envName(flagName string) string {
	return "TOKENKEEPER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// runFunc is the body of a command: it runs after the command line and
// the environment have filled the command's flags, with the positional
// arguments.
type runFunc func(args []string) error

// defineFunc declares one command: its usage and flags on c, and returns
// the body that runs with them.
type defineFunc func(c *command) runFunc

// command is one CLI command: its cobra command (which parses the command
// line), usage text and environment variables.
type command struct {
	cc     *cobra.Command
	fs     *pflag.FlagSet // cc.Flags()
	usage  string         // first line: "tokenkeeper serve [flags]"
	about  string         // a paragraph describing the command
	stderr io.Writer
	noEnv  map[string]bool // flags without an environment variable (envless)
	// ownEnv lists the flags whose variable carries the command's name,
	// TOKENKEEPER_<COMMAND>_<FLAG>, because the same variable would mean
	// something else to another command; allOwnEnv: all of them (tools
	// such as testidp and demo, which must not read the broker's).
	ownEnv    map[string]bool
	allOwnEnv bool
	// inline lists the flags that take a secret inline, with the safer
	// forms to use instead: they are listed last in the help, and using
	// one on the command line prints a warning.
	inline map[string]string

	positional []string // arguments that are not flags, in order
	dashAt     int      // how many positional arguments came before "--"; -1 without "--"
}

// describe sets the command's usage line and description.
func (c *command) describe(usage, about string) {
	c.usage, c.about = usage, about
}

// inlineSecret marks flag name as taking a secret inline; safer names the
// forms to prefer ("--client-secret-file (or '-' for standard input)").
func (c *command) inlineSecret(name, safer string) {
	if c.inline == nil {
		c.inline = map[string]string{}
	}
	c.inline[name] = safer
}

// envless says flags have no environment variable: per-run choices such
// as the name of the thing a command changes.
func (c *command) envless(flags ...string) {
	if c.noEnv == nil {
		c.noEnv = map[string]bool{}
	}
	for _, f := range flags {
		c.noEnv[f] = true
	}
}

// commandEnv gives flags (all of the command's, without any) variables
// named after the command: TOKENKEEPER_<COMMAND>_<FLAG>.
func (c *command) commandEnv(flags ...string) {
	if len(flags) == 0 {
		c.allOwnEnv = true
		return
	}
	if c.ownEnv == nil {
		c.ownEnv = map[string]bool{}
	}
	for _, f := range flags {
		c.ownEnv[f] = true
	}
}

// envOnly are the variables that are no flag's: each holds a secret
// itself, which a flag must not (other users see flags in the process
// list); a flag names the file that holds it instead.
var envOnly = []struct{ name, commands, meaning string }{
	{"TOKENKEEPER_MASTER_KEY", "serve, init, admin recover, keys rotate-master",
		"the base64 master key itself, instead of `--master-key-file` (for keys rotate-master: the current one)"},
	{"TOKENKEEPER_NEW_MASTER_KEY", "keys rotate-master", "the new base64 master key itself, instead of `--new-master-key-file`"},
}

// envVar returns the environment variable of flag name, or "" if it has
// none: TOKENKEEPER_<FLAG>, or TOKENKEEPER_<COMMAND>_<FLAG> (commandEnv).
// --json and --help have none.
func (c *command) envVar(name string) string {
	if c.noEnv[name] || name == "json" || name == "help" {
		return ""
	}
	if c.allOwnEnv || c.ownEnv[name] {
		words := strings.Fields(c.cc.CommandPath())[1:] // without "tokenkeeper"
		return envName(strings.Join(append(words, name), "-"))
	}
	return envName(name)
}

// visibleFlags calls fn for each of the command's own flags, in name order,
// without cobra's --help.
func (c *command) visibleFlags(fn func(*pflag.Flag)) {
	c.fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && !f.Hidden {
			fn(f)
		}
	})
}

func (c *command) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", c.usage, c.about)
	n := 0
	c.visibleFlags(func(*pflag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintf(w, "\nFlags (one with a [$VARIABLE] also reads it from the environment; the command line wins):\n")
	c.visibleFlags(func(f *pflag.Flag) {
		if _, ok := c.inline[f.Name]; !ok {
			c.printFlag(w, f)
		}
	})
	if len(c.inline) == 0 {
		return
	}
	fmt.Fprintf(w, "\nSecrets inline (for tests and demos only: other users see them in the process list):\n")
	c.visibleFlags(func(f *pflag.Flag) {
		if safer, ok := c.inline[f.Name]; ok {
			c.printFlag(w, f)
			fmt.Fprintf(w, "      prefer %s\n", safer)
		}
	})
}

func (c *command) printFlag(w io.Writer, f *pflag.Flag) {
	typ, u := pflag.UnquoteUsage(f)
	line := "  --" + f.Name
	if typ != "" && typ != "bool" {
		line += " " + typ
	}
	fmt.Fprintf(w, "%s\n      %s", line, u)
	if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "[]" {
		fmt.Fprintf(w, " (default %s)", f.DefValue)
	}
	if v := c.envVar(f.Name); v != "" {
		fmt.Fprintf(w, " [$%s]", v)
	}
	fmt.Fprintln(w)
}

// bind runs after cobra has parsed the command line: it keeps the
// positional arguments, warns about secrets given inline, and fills every
// flag not given on the command line from its environment variable.
func (c *command) bind(args []string, getenv func(string) string) error {
	c.positional = nil
	if len(args) > 0 {
		c.positional = args
	}
	c.dashAt = c.cc.ArgsLenAtDash()
	c.visibleFlags(func(f *pflag.Flag) {
		if safer, ok := c.inline[f.Name]; ok && f.Changed {
			fmt.Fprintf(c.stderr, "warning: --%s puts a secret on the command line, where other users can see it in the process list; use %s instead\n", f.Name, safer)
		}
	})
	var err error
	c.visibleFlags(func(f *pflag.Flag) {
		name := c.envVar(f.Name)
		if f.Changed || name == "" || err != nil {
			return
		}
		if v := getenv(name); v != "" {
			if e := c.fs.Set(f.Name, v); e != nil {
				// Not the value: it may be a secret.
				err = usagef("invalid value in $%s (--%s): %s", name, f.Name, valueProblem(f, e))
			}
		}
	})
	return err
}

// flagError is the error of a command line cobra cannot parse: a usage
// error that names the flag as typed and points to the command's help.
func flagError(cmd *cobra.Command, err error) error {
	var iv *pflag.InvalidValueError
	if errors.As(err, &iv) {
		return usagef("invalid value %q for --%s: %s (see %s --help)", iv.GetValue(), iv.GetFlag().Name,
			valueProblem(iv.GetFlag(), iv.Unwrap()), cmd.CommandPath())
	}
	var ne *pflag.NotExistError
	if errors.As(err, &ne) {
		if sh := ne.GetSpecifiedShortnames(); len(sh) > 1 && cmd.Flags().Lookup(sh) != nil {
			// -json: Go's flag package takes one dash, pflag two.
			return usagef("unknown flag -%s: write --%s (two dashes) (see %s --help)", sh, sh, cmd.CommandPath())
		}
		if like := similarFlags(cmd.Flags(), ne.GetSpecifiedName()); len(like) > 0 {
			return usagef("%v (did you mean %s? see %s --help)", err, strings.Join(like, " or "), cmd.CommandPath())
		}
	}
	return usagef("%v (see %s --help)", err, cmd.CommandPath())
}

// similarFlags returns the visible flags of fs whose names are close to
// typed (a typo, or the start of the name), at most three.
func similarFlags(fs *pflag.FlagSet, typed string) []string {
	var like []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || len(like) == 3 {
			return
		}
		if editDistance(typed, f.Name) <= 2 || (len(typed) >= 3 && strings.HasPrefix(f.Name, typed)) {
			like = append(like, "--"+f.Name)
		}
	})
	return like
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// valueProblem says what a flag of f's type expects, instead of a parser's
// message such as strconv.ParseInt's.
func valueProblem(f *pflag.Flag, err error) string {
	switch f.Value.Type() {
	case "int", "int64", "uint", "uint64":
		return "expected a whole number"
	case "duration":
		return "expected a duration such as 30s, 5m or 1h30m"
	case "bool":
		return "expected true or false"
	}
	return err.Error()
}

// oldNameFlag keeps --name (the form before the name became positional) as
// a hidden flag, so that scripts written for it keep working, with a warning.
func (c *command) oldNameFlag(name, what string) {
	c.fs.String(name, "", what+" (old form: give it as the first argument)")
	c.fs.MarkHidden(name)
	c.envless(name)
}

// name is the command's name without the program's: "credential add".
func (c *command) name() string { return strings.TrimPrefix(c.cc.CommandPath(), "tokenkeeper ") }

// nameArg returns the name of the thing a command adds: its one positional
// argument, or the hidden --FLAG of oldNameFlag.
func (c *command) nameArg(flag, what string) (string, error) {
	path := c.cc.CommandPath()
	f := c.fs.Lookup(flag)
	old := f != nil && f.Changed
	switch {
	case len(c.positional) == 1 && !old:
		return c.positional[0], nil
	case len(c.positional) == 0 && old && f.Value.String() != "":
		fmt.Fprintf(c.stderr, "warning: --%s is the old form: write %s %s\n", flag, path, f.Value.String())
		return f.Value.String(), nil
	case len(c.positional) == 1 && old:
		return "", usagef("%s: give %s once, as the argument (--%s is its old form; see %s --help)", c.name(), what, flag, path)
	case len(c.positional) > 1:
		return "", usagef("%s: expected one argument, %s; got %d: %s (see %s --help)", c.name(), what, len(c.positional), strings.Join(c.positional, " "), path)
	}
	return "", usagef("%s: expected %s as the argument (see %s --help)", c.name(), what, path)
}

// flagWords rewrites the API's field names in a broker's error message as
// the flags of this command (client_secret -> --client-secret): the user
// typed flags, not JSON fields. A one-word field is rewritten only where
// it starts the message ("role must be ..."), not inside a sentence.
func (c *command) flagWords(ae *apiError) {
	c.fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" || f.Name == "json" {
			return
		}
		field := strings.ReplaceAll(f.Name, "-", "_")
		if !strings.Contains(field, "_") {
			if strings.HasPrefix(ae.Detail, field+" ") {
				ae.Detail = "--" + f.Name + ae.Detail[len(field):]
			}
			return
		}
		re := regexp.MustCompile(`(^|[^-\w])` + regexp.QuoteMeta(field) + `\b`)
		ae.Detail = re.ReplaceAllString(ae.Detail, "${1}--"+f.Name)
	})
}

// flagValue returns the value of flag name, or "" if c has no such flag.
func (c *command) flagValue(name string) string {
	if f := c.fs.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// args returns the positional arguments, requiring exactly n of them.
func (c *command) args(n int, what string) ([]string, error) {
	if len(c.positional) != n {
		return nil, usagef("%s: expected %s (see %s --help)", c.name(), what, c.cc.CommandPath())
	}
	return c.positional, nil
}

// flagT is pflag.Flag, for Visit callbacks.
type flagT = pflag.Flag
