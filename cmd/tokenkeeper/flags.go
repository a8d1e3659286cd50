package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
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

// helpRequest is a --help (or -h): run prints the command's usage on
// standard output and exits 0.
type helpRequest struct{ c *command }

func (h *helpRequest) Error() string { return "help requested" }

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// envName returns the environment variable of a flag: TOKENKEEPER_ and the
// flag name in upper case with '-' as '_'.
func envName(flagName string) string {
	return "TOKENKEEPER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// command is one CLI command's flag set, usage and environment.
type command struct {
	fs     *flag.FlagSet
	usage  string // first line: "tokenkeeper serve [flags]"
	about  string // a paragraph describing the command
	stderr io.Writer
	noEnv  map[string]bool // flags without an environment variable
	// inline lists the flags that take a secret inline, with the safer
	// forms to use instead: they are listed last in the help, and using
	// one on the command line prints a warning.
	inline map[string]string

	positional []string // arguments that are not flags, in order
}

func newCommand(stderr io.Writer, usage, about string) *command {
	// The command's name: the leading lower-case words of its usage line.
	var name []string
	for _, w := range strings.Fields(usage) {
		if w == "" || w[0] < 'a' || w[0] > 'z' {
			break
		}
		name = append(name, w)
	}
	c := &command{fs: flag.NewFlagSet(strings.Join(name, " "), flag.ContinueOnError), usage: usage, about: about, stderr: stderr}
	c.fs.SetOutput(io.Discard)
	return c
}

// inlineSecret marks flag name as taking a secret inline; safer names the
// forms to prefer ("--client-secret-file (or '-' for standard input)").
func (c *command) inlineSecret(name, safer string) {
	if c.inline == nil {
		c.inline = map[string]string{}
	}
	c.inline[name] = safer
}

func (c *command) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", c.usage, c.about)
	n := 0
	c.fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintf(w, "\nFlags (each also read from the environment variable shown; a flag on the command line wins):\n")
	c.fs.VisitAll(func(f *flag.Flag) {
		if _, ok := c.inline[f.Name]; !ok {
			c.printFlag(w, f)
		}
	})
	if len(c.inline) == 0 {
		return
	}
	fmt.Fprintf(w, "\nSecrets inline (for tests and demos only: other users see them in the process list):\n")
	c.fs.VisitAll(func(f *flag.Flag) {
		if safer, ok := c.inline[f.Name]; ok {
			c.printFlag(w, f)
			fmt.Fprintf(w, "      prefer %s\n", safer)
		}
	})
}

func (c *command) printFlag(w io.Writer, f *flag.Flag) {
	typ, u := flag.UnquoteUsage(f)
	line := "  --" + f.Name
	if typ != "" {
		line += " " + typ
	}
	fmt.Fprintf(w, "%s\n      %s", line, u)
	if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
		fmt.Fprintf(w, " (default %s)", f.DefValue)
	}
	if !c.noEnv[f.Name] && f.Name != "json" {
		fmt.Fprintf(w, " [$%s]", envName(f.Name))
	}
	fmt.Fprintln(w)
}

// parse parses args, then fills every flag not given on the command line
// from its environment variable. -h/--help returns a *helpRequest, which run
// answers with the usage on standard output.
// Flags and positional arguments may be interleaved ("show NAME --json");
// "--" ends the flags.
func (c *command) parse(args []string, getenv func(string) string) error {
	var positional []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return &helpRequest{c}
			}
			return usagef("%v (see %s --help)", err, c.fs.Name())
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	c.positional = positional
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c.fs.VisitAll(func(f *flag.Flag) {
		if safer, ok := c.inline[f.Name]; ok && set[f.Name] {
			fmt.Fprintf(c.stderr, "warning: --%s puts a secret on the command line, where other users can see it in the process list; use %s instead\n", f.Name, safer)
		}
	})
	var err error
	c.fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || c.noEnv[f.Name] || f.Name == "json" || err != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if e := c.fs.Set(f.Name, v); e != nil {
				err = usagef("invalid value in $%s: %v", envName(f.Name), e)
			}
		}
	})
	return err
}

// args returns the positional arguments, requiring exactly n of them.
func (c *command) args(n int, what string) ([]string, error) {
	if len(c.positional) != n {
		return nil, usagef("%s: expected %s (see %s --help)", c.fs.Name(), what, c.fs.Name())
	}
	return c.positional, nil
}

// flagT is flag.Flag, for Visit callbacks.
type flagT = flag.Flag
