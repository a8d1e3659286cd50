package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// readLoginPassword reads the password of a login: the first line of
// standard input with fromStdin, else from the terminal without echo,
// asked once.
func (e *env) readLoginPassword(fromStdin bool, prompt string) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(io.LimitReader(e.stdin, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password from standard input: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", usagef("standard input holds no password")
		}
		return pw, nil
	}
	f, ok := e.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usagef("no terminal to ask for the password: pass --password-stdin (--login-password-stdin on other commands) and write it to standard input")
	}
	fmt.Fprintf(e.stderr, "%s: ", prompt)
	pw, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", err
	}
	return string(pw), nil
}

func (e *env) cmdLogin(c *command) runFunc {
	c.describe("tokenkeeper login USER [--password-stdin] [--server URL] [--json]",
		`Signs in to the broker as a user and keeps the session for later commands,
which then need no API key: the refresh token, rotated on every use, and the
current access token, in $XDG_CONFIG_HOME/tokenkeeper/sessions.json (default
~/.config; mode 0600, directory 0700), one session per broker URL. A session
lasts while it is used at least once a day, 30 days at most. Sensitive
commands (creating or deleting credentials, changing their secrets, managing
users, keys and clients) ask for the password again once the login is no
longer fresh. $TOKENKEEPER_API_KEY, when set, wins over the session.`)
	var ao apiOptions
	ao.registerServer(c)
	stdin := c.fs.Bool("password-stdin", false, "read the password from standard input (the first line)")
	asJSON := c.fs.Bool("json", false, "print JSON (never the session's tokens)")
	c.envless("password-stdin")
	return func(args []string) error {
		pos, err := c.args(1, "the user name")
		if err != nil {
			return err
		}
		base, err := ao.serverURL()
		if err != nil {
			return err
		}
		store, err := e.sessionStore()
		if err != nil {
			return err
		}
		pw, err := e.readLoginPassword(*stdin, "Password for "+pos[0])
		if err != nil {
			return err
		}
		hc := &http.Client{Timeout: 60 * time.Second}
		var ans loginAnswer
		if err := postJSON(e.ctx, hc, base+"/v1/auth/login", map[string]string{"username": pos[0], "password": pw}, &ans); err != nil {
			return fmt.Errorf("log in: %w", err)
		}
		if err := store.update(base, func(*session) (*session, error) { return ans.session(pos[0], time.Now()), nil }); err != nil {
			return err
		}
		if e.getenv("TOKENKEEPER_API_KEY") != "" {
			fmt.Fprintln(e.stderr, "warning: $TOKENKEEPER_API_KEY is set and wins over the session: unset it to use the login")
		}
		if *asJSON {
			return printJSON(e.stdout, sessionView{LoggedIn: true, Server: base, Username: pos[0], SessionsFile: store.path()})
		}
		fmt.Fprintf(e.stdout, "Logged in to %s as %s. The session is kept in %s.\n", base, pos[0], store.path())
		return nil
	}
}

func (e *env) cmdLogout(c *command) runFunc {
	c.describe("tokenkeeper logout [--server URL] [--json]",
		"Ends the login session with this broker: the broker revokes it, and it is removed from the sessions file.")
	var ao apiOptions
	ao.registerServer(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		if _, err := c.args(0, "no arguments"); err != nil {
			return err
		}
		base, err := ao.serverURL()
		if err != nil {
			return err
		}
		store, err := e.sessionStore()
		if err != nil {
			return err
		}
		sess, err := store.get(base)
		if err != nil {
			return err
		}
		if sess == nil {
			if *asJSON {
				return printJSON(e.stdout, sessionView{Server: base, SessionsFile: store.path()})
			}
			fmt.Fprintf(e.stdout, "Not logged in to %s.\n", base)
			return nil
		}
		cl := &apiClient{base: base, client: &http.Client{Timeout: 60 * time.Second},
			sess: &sessionAuth{store: store, server: base, username: sess.Username, hc: &http.Client{Timeout: 60 * time.Second}}}
		err = cl.do(e.ctx, "POST", "/v1/auth/logout", nil, nil)
		var ended *errSessionEnded
		if err != nil && !errors.As(err, &ended) {
			return fmt.Errorf("log out: %w", err)
		}
		if err := store.update(base, func(*session) (*session, error) { return nil, nil }); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, sessionView{LoggedOut: true, Server: base, Username: sess.Username, SessionsFile: store.path()})
		}
		fmt.Fprintf(e.stdout, "Logged out of %s (user %s).\n", base, sess.Username)
		return nil
	}
}

// sessionView is what login and logout print with --json: which session
// changed, and where sessions are kept (never a token).
type sessionView struct {
	LoggedIn     bool   `json:"logged_in,omitempty"`
	LoggedOut    bool   `json:"logged_out,omitempty"`
	Server       string `json:"server"`
	Username     string `json:"username,omitempty"`
	SessionsFile string `json:"sessions_file"`
}

func (e *env) cmdWhoami(c *command) runFunc {
	c.describe("tokenkeeper whoami [--json]",
		"Says who the broker takes you for: the API key's or the logged-in user's name, role and freshness.")
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		_, cl, err := e.clientCommand(c, &ao, 0, "no arguments")
		if err != nil {
			return err
		}
		var who struct {
			Kind      string     `json:"kind"`
			Name      string     `json:"name"`
			Role      string     `json:"role"`
			Fresh     bool       `json:"fresh"`
			ExpiresAt *time.Time `json:"expires_at,omitempty"`
			AuthTime  *time.Time `json:"auth_time,omitempty"`
		}
		if err := cl.do(e.ctx, "GET", "/v1/auth/whoami", nil, &who); err != nil {
			return fmt.Errorf("whoami: %w", err)
		}
		if *asJSON {
			return printJSON(e.stdout, who)
		}
		how := "API key"
		if cl.sess != nil {
			how = "login session"
		}
		fmt.Fprintf(e.stdout, "%s %s, role %s, on %s (%s)", who.Kind, who.Name, who.Role, cl.base, how)
		if who.AuthTime != nil {
			fresh := "not fresh: sensitive commands ask for the password"
			if who.Fresh {
				fresh = "fresh"
			}
			fmt.Fprintf(e.stdout, "; logged in at %s, %s", who.AuthTime.Local().Format(timeLayout), fresh)
		}
		fmt.Fprintln(e.stdout)
		return nil
	}
}
