package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
)

// readPassword reads a password: the first line of standard input with
// --password-stdin, else from the terminal without echo, asked twice.
func (e *env) readPassword(fromStdin bool, what string) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(io.LimitReader(e.stdin, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password from standard input: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", usagef("--password-stdin: standard input holds no password")
		}
		return pw, nil
	}
	f, ok := e.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usagef("no terminal to ask for the %s: pass --password-stdin and write it to standard input", what)
	}
	fmt.Fprintf(e.stderr, "%s: ", what)
	a, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(e.stderr, "Again: ")
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", err
	}
	if string(a) != string(b) {
		return "", errors.New("the two passwords differ")
	}
	return string(a), nil
}

func (e *env) cmdUserAdd(c *command) runFunc {
	c.describe("tokenkeeper user add NAME [--role admin|viewer] [--password-stdin] [--json]",
		`Creates a user who logs in with a password (POST /v1/auth/login). An admin
may do everything; a viewer may list credentials and events but not read tokens.
The password is asked on the terminal, or read from standard input.`)
	var ao apiOptions
	ao.register(c)
	role := c.fs.String("role", "viewer", "admin or viewer")
	c.completeWords("role", "admin", "viewer")
	stdin := c.fs.Bool("password-stdin", false, "read the password from standard input")
	asJSON := c.fs.Bool("json", false, "print JSON")
	c.envless("role", "password-stdin")
	return func(args []string) error {
		pos, cl, err := e.clientCommand(c, &ao, 1, "the user name")
		if err != nil {
			return err
		}
		pw, err := e.readPassword(*stdin, "Password for "+pos[0])
		if err != nil {
			return err
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "POST", "/v1/users", map[string]string{"username": pos[0], "password": pw, "role": *role}, &out); err != nil {
			return fmt.Errorf("add user: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, out)
		}
		fmt.Fprintf(e.stdout, "Added %s user %q.\n", *role, pos[0])
		return nil
	}
}

func (e *env) cmdUserList(c *command) runFunc {
	c.describe("tokenkeeper user list [--json]", "Lists the users.")
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		_, cl, err := e.clientCommand(c, &ao, 0, "no arguments")
		if err != nil {
			return err
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "GET", "/v1/users", nil, &out); err != nil {
			return fmt.Errorf("list users: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, out)
		}
		var list struct {
			Users []struct {
				Username  string    `json:"username"`
				Role      string    `json:"role"`
				CreatedAt time.Time `json:"created_at"`
			} `json:"users"`
		}
		if err := json.Unmarshal(out, &list); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tROLE\tCREATED")
		for _, u := range list.Users {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Username, u.Role, u.CreatedAt.Local().Format(timeLayout))
		}
		return tw.Flush()
	}
}

func (e *env) cmdUserPasswd(c *command) runFunc {
	c.describe("tokenkeeper user passwd NAME [--password-stdin]", "Sets a user's password and ends all the user's sessions.")
	var ao apiOptions
	ao.register(c)
	stdin := c.fs.Bool("password-stdin", false, "read the password from standard input")
	c.envless("password-stdin")
	return func(args []string) error {
		pos, cl, err := e.clientCommand(c, &ao, 1, "the user name")
		if err != nil {
			return err
		}
		pw, err := e.readPassword(*stdin, "New password for "+pos[0])
		if err != nil {
			return err
		}
		if err := cl.do(e.ctx, "PUT", "/v1/users/"+url.PathEscape(pos[0])+"/password", map[string]string{"password": pw}, nil); err != nil {
			return fmt.Errorf("set password: %w", err)
		}
		fmt.Fprintf(e.stdout, "Password of %q changed.\n", pos[0])
		return nil
	}
}

func (e *env) cmdUserRevokeSessions(c *command) runFunc {
	c.describe("tokenkeeper user revoke-sessions NAME [--json]",
		`Ends every session of a user: its refresh tokens stop working at once and its
access tokens within a second on every replica. The password stays.`)
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		pos, cl, err := e.clientCommand(c, &ao, 1, "the user name")
		if err != nil {
			return err
		}
		var out struct {
			Username string `json:"username"`
			Revoked  int    `json:"revoked_sessions"`
		}
		if err := cl.do(e.ctx, "POST", "/v1/users/"+url.PathEscape(pos[0])+"/revoke-sessions", nil, &out); err != nil {
			return fmt.Errorf("revoke sessions: %w", err)
		}
		if *asJSON {
			out.Username = pos[0]
			return printJSON(e.stdout, out)
		}
		fmt.Fprintf(e.stdout, "Ended %d %s of %q.\n", out.Revoked, plural(out.Revoked, "session", "sessions"), pos[0])
		return nil
	}
}

func (e *env) cmdClientAdd(c *command) runFunc {
	c.describe("tokenkeeper client add CLIENT_ID --credentials a,b [--json]",
		`Creates a service client for the broker's OAuth2 token endpoint (/oauth2/token,
grant_type=client_credentials, scope=credential:NAME) and prints its secret once.`)
	var ao apiOptions
	ao.register(c)
	creds := c.fs.String("credentials", "", "credential names the client may read, comma separated")
	asJSON := c.fs.Bool("json", false, "print JSON")
	c.envless("credentials")
	return func(args []string) error {
		pos, cl, err := e.clientCommand(c, &ao, 1, "the client id")
		if err != nil {
			return err
		}
		var out struct {
			ClientID     string   `json:"client_id"`
			Credentials  []string `json:"credentials"`
			ClientSecret string   `json:"client_secret"`
		}
		if err := cl.do(e.ctx, "POST", "/v1/clients", map[string]any{"client_id": pos[0], "credentials": splitList(*creds)}, &out); err != nil {
			return fmt.Errorf("add client: %w", err)
		}
		if *asJSON {
			return printJSON(e.stdout, out)
		}
		fmt.Fprintf(e.stdout, "Created client %q for %s. Its secret is shown only this once:\n\n    %s\n\n", out.ClientID, strings.Join(out.Credentials, ", "), out.ClientSecret)
		fmt.Fprintf(e.stdout, "Token endpoint: %s/oauth2/token (client_secret_basic or client_secret_post, scope=credential:NAME)\n", strings.TrimRight(ao.server, "/"))
		return nil
	}
}

func (e *env) cmdClientList(c *command) runFunc {
	c.describe("tokenkeeper client list [--json]", "Lists the service clients (never their secrets).")
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		_, cl, err := e.clientCommand(c, &ao, 0, "no arguments")
		if err != nil {
			return err
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "GET", "/v1/clients", nil, &out); err != nil {
			return fmt.Errorf("list clients: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, out)
		}
		var list struct {
			Clients []struct {
				ClientID    string    `json:"client_id"`
				Credentials []string  `json:"credentials"`
				CreatedAt   time.Time `json:"created_at"`
			} `json:"clients"`
		}
		if err := json.Unmarshal(out, &list); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CLIENT ID\tCREDENTIALS\tCREATED")
		for _, cc := range list.Clients {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", cc.ClientID, dash(strings.Join(cc.Credentials, ",")), cc.CreatedAt.Local().Format(timeLayout))
		}
		return tw.Flush()
	}
}

func (e *env) cmdClientRotate(c *command) runFunc {
	c.describe("tokenkeeper client rotate-secret CLIENT_ID [--json]", "Gives a service client a new secret, printed once; the old one stops working.")
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		pos, cl, err := e.clientCommand(c, &ao, 1, "the client id")
		if err != nil {
			return err
		}
		var out struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		if err := cl.do(e.ctx, "POST", "/v1/clients/"+url.PathEscape(pos[0])+"/rotate-secret", map[string]string{}, &out); err != nil {
			return fmt.Errorf("rotate client secret: %w", err)
		}
		if *asJSON {
			return printJSON(e.stdout, out)
		}
		fmt.Fprintf(e.stdout, "New secret of %q, shown only this once:\n\n    %s\n\n", out.ClientID, out.ClientSecret)
		return nil
	}
}

func (e *env) cmdAudit(c *command) runFunc {
	c.describe("tokenkeeper audit [--limit 50] [--actor A] [--action X] [--before ID] [--json]",
		"Prints the audit log, newest first: token reads, logins, refreshes, failed authentications and admin changes.")
	var ao apiOptions
	ao.register(c)
	limit := c.fs.Int("limit", 50, "how many records (1 to 1000)")
	actorF := c.fs.String("actor", "", "only this actor, e.g. user:alice or apikey:ops")
	action := c.fs.String("action", "", "only this action, e.g. auth.login")
	before := c.fs.Int64("before", 0, "only records older than this id (paging)")
	asJSON := c.fs.Bool("json", false, "print JSON")
	c.envless("limit", "actor", "action", "before")
	return func(args []string) error {
		_, cl, err := e.clientCommand(c, &ao, 0, "no arguments")
		if err != nil {
			return err
		}
		q := url.Values{"limit": {strconv.Itoa(*limit)}}
		if *actorF != "" {
			q.Set("actor", *actorF)
		}
		if *action != "" {
			q.Set("action", *action)
		}
		if *before > 0 {
			q.Set("before", strconv.FormatInt(*before, 10))
		}
		var out json.RawMessage
		if err := cl.do(e.ctx, "GET", "/v1/audit?"+q.Encode(), nil, &out); err != nil {
			return fmt.Errorf("read audit log: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, out)
		}
		var list struct {
			Records []struct {
				ID         int64     `json:"id"`
				Time       time.Time `json:"time"`
				Actor      string    `json:"actor"`
				Action     string    `json:"action"`
				Target     string    `json:"target"`
				Outcome    string    `json:"outcome"`
				RemoteAddr string    `json:"remote_addr"`
				Detail     string    `json:"detail"`
			} `json:"records"`
		}
		if err := json.Unmarshal(out, &list); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTIME\tACTOR\tACTION\tTARGET\tOUTCOME\tFROM\tDETAIL")
		for _, r := range list.Records {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Time.Local().Format(timeLayout), r.Actor, r.Action, dash(r.Target), r.Outcome, dash(r.RemoteAddr), oneLine(r.Detail))
		}
		return tw.Flush()
	}
}
