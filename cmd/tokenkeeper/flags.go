package main

import (
	"errors"
	"fmt"
	"io"
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
	noEnv  map[string]bool // flags without an environment variable
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

// envVar returns the environment variable of flag name, or "" if it has none.
func (c *command) envVar(name string) string {
	if c.noEnv[name] || name == "json" || name == "help" {
		return ""
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
	fmt.Fprintf(w, "\nFlags (each also read from the environment variable shown; a flag on the command line wins):\n")
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
	return usagef("%v (see %s --help)", err, cmd.CommandPath())
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

// args returns the positional arguments, requiring exactly n of them.
func (c *command) args(n int, what string) ([]string, error) {
	if len(c.positional) != n {
		return nil, usagef("%s: expected %s (see %s --help)", c.cc.CommandPath(), what, c.cc.CommandPath())
	}
	return c.positional, nil
}

// flagT is pflag.Flag, for Visit callbacks.
type flagT = pflag.Flag
