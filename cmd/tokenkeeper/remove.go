package main

import (
	"fmt"
	"net/url"
)

// removable is a kind of thing an rm subcommand deletes: DELETE path/NAME.
type removable struct {
	noun  string // "credential"
	path  string // "/v1/credentials"
	arg   string // the positional argument, for usage errors: "the credential name"
	usage string // the synopsis without [--json]: "tokenkeeper credential rm NAME"
	about string // what removing one does
}

// removedView is what an rm subcommand prints with --json.
type removedView struct {
	Removed bool   `json:"removed"`
	Kind    string `json:"kind"`
	Name    string `json:"name"`
}

// cmdRemove returns the rm subcommand of a removable.
func (e *env) cmdRemove(t removable) defineFunc {
	return func(c *command) runFunc {
		c.describe(t.usage+" [--json]", t.about)
		var ao apiOptions
		ao.register(c)
		asJSON := c.fs.Bool("json", false, "print JSON")
		return func(args []string) error {
			pos, cl, err := e.clientCommand(c, &ao, 1, t.arg)
			if err != nil {
				return err
			}
			if err := cl.do(e.ctx, "DELETE", t.path+"/"+url.PathEscape(pos[0]), nil, nil); err != nil {
				return fmt.Errorf("remove %s: %w", t.noun, err)
			}
			if *asJSON {
				return printJSON(e.stdout, removedView{Removed: true, Kind: t.noun, Name: pos[0]})
			}
			fmt.Fprintf(e.stdout, "Removed %s %q.\n", t.noun, pos[0])
			return nil
		}
	}
}
