package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// listedThing is a kind of thing the API lists but has no GET of its own
// for: show finds it in the list.
type listedThing struct {
	noun    string   // "API key"
	path    string   // "/v1/apikeys"
	listKey string   // the list's member in the answer: "api_keys"
	keys    []string // the fields that name one: "id", "name"
}

// cmdShowListed returns the show subcommand of a listedThing.
func (e *env) cmdShowListed(t listedThing, usage string) defineFunc {
	return func(c *command) runFunc {
		c.describe(usage, fmt.Sprintf("Shows one %s (never a secret).", t.noun))
		var ao apiOptions
		ao.register(c)
		asJSON := c.fs.Bool("json", false, "print JSON")
		return func(args []string) error {
			pos, cl, err := e.clientCommand(c, &ao, 1, "the "+t.noun+"'s "+strings.Join(t.keys, " or "))
			if err != nil {
				return err
			}
			var out map[string]json.RawMessage
			if err := cl.do(e.ctx, "GET", t.path, nil, &out); err != nil {
				return fmt.Errorf("show %s: %w", t.noun, err)
			}
			var items []json.RawMessage
			if err := json.Unmarshal(out[t.listKey], &items); err != nil {
				return fmt.Errorf("show %s: the broker's answer has no %s list", t.noun, t.listKey)
			}
			var found json.RawMessage
			for _, it := range items {
				var fields map[string]any
				if err := json.Unmarshal(it, &fields); err != nil {
					return fmt.Errorf("show %s: %w", t.noun, err)
				}
				for _, k := range t.keys {
					if s, ok := fields[k].(string); ok && s == pos[0] {
						if found != nil {
							return fmt.Errorf("show %s: %q names more than one; give the %s", t.noun, pos[0], t.keys[0])
						}
						found = it
						break
					}
				}
			}
			if found == nil {
				return fmt.Errorf("show %s: no %s %q", t.noun, t.noun, pos[0])
			}
			if *asJSON {
				return printRaw(e.stdout, found)
			}
			return printFields(e.stdout, found)
		}
	}
}

// printFields prints a JSON object's members in its order, one a line:
// lists comma separated, times in the local zone, null as "-".
func printFields(w io.Writer, obj json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s:\t%s\n", strings.ReplaceAll(tok.(string), "_", " "), fieldText(v))
	}
	return tw.Flush()
}

func fieldText(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return t.Local().Format(timeLayout)
		}
		return dash(x)
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = fieldText(p)
		}
		return dash(strings.Join(parts, ","))
	case map[string]any:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}
