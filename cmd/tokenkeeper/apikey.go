package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

func (e *env) cmdAPIKeyCreate(c *command) runFunc {
	c.describe("tokenkeeper apikey add NAME [--role admin|consumer] [--credentials a,b] [--json]",
		`Creates an API key and prints it once. A consumer key may only read the
token of, and refresh, the credentials it lists; an admin key may do everything.`)
	var ao apiOptions
	ao.register(c)
	c.oldNameFlag("name", "the key name")
	role := c.fs.String("role", "consumer", "admin or consumer")
	c.completeWords("role", "admin", "consumer")
	creds := c.fs.String("credentials", "", "credential names a consumer may read, comma separated")
	asJSON := c.fs.Bool("json", false, "print JSON")
	c.envless("name", "role", "credentials")
	return func(args []string) error {
		name, err := c.nameArg("name", "the key name")
		if err != nil {
			return err
		}
		cl, err := e.apiClient(&ao)
		if err != nil {
			return err
		}
		body := map[string]any{"name": name, "role": *role}
		if list := splitList(*creds); len(list) > 0 {
			body["credentials"] = list
		}
		var out struct {
			ID          string   `json:"id"`
			Name        string   `json:"name"`
			Role        string   `json:"role"`
			Credentials []string `json:"credentials"`
			Key         string   `json:"key"`
		}
		if err := cl.do(e.ctx, "POST", "/v1/apikeys", body, &out); err != nil {
			return fmt.Errorf("create API key: %w", err)
		}
		if *asJSON {
			return printJSON(e.stdout, out)
		}
		fmt.Fprintf(e.stdout, "Created %s key %q (id %s). It is shown only this once:\n\n    %s\n\n", out.Role, out.Name, out.ID, out.Key)
		return nil
	}
}

func (e *env) cmdAPIKeyList(c *command) runFunc {
	c.describe("tokenkeeper apikey list [--json]", "Lists API keys (their prefixes, never the keys).")
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		_, cl, err := e.clientCommand(c, &ao, 0, "no arguments")
		if err != nil {
			return err
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "GET", "/v1/apikeys", nil, &out); err != nil {
			return fmt.Errorf("list API keys: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, out)
		}
		var list struct {
			Keys []struct {
				ID          string     `json:"id"`
				Name        string     `json:"name"`
				Prefix      string     `json:"prefix"`
				Role        string     `json:"role"`
				Credentials []string   `json:"credentials"`
				CreatedAt   time.Time  `json:"created_at"`
				RevokedAt   *time.Time `json:"revoked_at"`
			} `json:"api_keys"`
		}
		if err := json.Unmarshal(out, &list); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tROLE\tCREDENTIALS\tCREATED\tREVOKED")
		for _, k := range list.Keys {
			rev := "-"
			if k.RevokedAt != nil {
				rev = k.RevokedAt.Local().Format(timeLayout)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, k.Role, dash(strings.Join(k.Credentials, ",")), k.CreatedAt.Local().Format(timeLayout), rev)
		}
		return tw.Flush()
	}
}

func (e *env) cmdAPIKeyRevoke(c *command) runFunc {
	c.describe("tokenkeeper apikey rm ID_OR_NAME [--json]", "Revokes an API key; it stops working at once on this broker, within seconds on other replicas.")
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		pos, cl, err := e.clientCommand(c, &ao, 1, "the key's id or name")
		if err != nil {
			return err
		}
		var out struct {
			AlreadyRevoked bool `json:"already_revoked"`
		}
		if err := cl.do(e.ctx, "DELETE", "/v1/apikeys/"+url.PathEscape(pos[0]), nil, &out); err != nil {
			return fmt.Errorf("revoke API key: %w", err)
		}
		if *asJSON {
			return printJSON(e.stdout, map[string]any{"revoked": true, "already_revoked": out.AlreadyRevoked, "name": pos[0]})
		}
		if out.AlreadyRevoked {
			fmt.Fprintf(e.stdout, "API key %q was already revoked; nothing changed.\n", pos[0])
			return nil
		}
		fmt.Fprintf(e.stdout, "Revoked API key %q.\n", pos[0])
		return nil
	}
}

func (e *env) cmdKeysRotate(c *command) runFunc {
	c.describe("tokenkeeper keys rotate [--json]",
		`Rotates both keys: adds a new data key, makes it the active one and
re-seals every secret with it (rows not yet re-sealed keep opening with the
older keys), and adds a new JWT signing key for users' access tokens (those
signed by the old one verify until they expire). Reports both.`)
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		_, cl, err := e.clientCommand(c, &ao, 0, "no arguments")
		if err != nil {
			return err
		}
		var out struct {
			Resealed   int    `json:"resealed"`
			SigningKey string `json:"signing_key,omitempty"`
		}
		if err := cl.do(e.ctx, "POST", "/v1/keys/rotate", map[string]string{}, &out); err != nil {
			return fmt.Errorf("rotate keys: %w", err)
		}
		if *asJSON {
			return printJSON(e.stdout, out)
		}
		fmt.Fprintf(e.stdout, "Rotated the data key: %d %s re-sealed with the new one.\n", out.Resealed, plural(out.Resealed, "secret", "secrets"))
		if out.SigningKey != "" {
			fmt.Fprintf(e.stdout, "Rotated the JWT signing key: new key %s signs users' access tokens; those signed by the old one verify until they expire.\n", out.SigningKey)
		}
		return nil
	}
}
