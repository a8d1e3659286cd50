package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// apiOptions select the broker a client command talks to, and how it
// authenticates: an API key ($TOKENKEEPER_API_KEY or --api-key) wins;
// without one, the session of 'tokenkeeper login'.
type apiOptions struct {
	server        string
	apiKey        string
	insecure      bool // plain http off loopback allowed
	passwordStdin bool // a fresh login's password comes from standard input
}

func (o *apiOptions) register(c *command) {
	o.registerServer(c)
	c.fs.StringVar(&o.apiKey, "api-key", "", "API key (without one: the session of 'tokenkeeper login')")
	c.fs.BoolVar(&o.passwordStdin, "login-password-stdin", false, "when the command needs a fresh login (a sensitive change on an old session), read your password from standard input instead of the terminal")
	c.inlineSecret("api-key", "$TOKENKEEPER_API_KEY")
	c.envless("login-password-stdin") // a per-run choice, as the password itself
}

// registerServer adds --server and --allow-insecure-server only.
func (o *apiOptions) registerServer(c *command) {
	c.fs.StringVar(&o.server, "server", "http://127.0.0.1:8080", "broker URL")
	c.fs.BoolVar(&o.insecure, "allow-insecure-server", false, "allow a plain-http --server that is not on loopback (the API key or password would cross the network unencrypted)")
}

// apiClient calls the broker's HTTP API with an API key or a session.
type apiClient struct {
	base   string
	key    string       // an API key; empty with a session
	sess   *sessionAuth // the login session; nil with an API key
	client *http.Client
	// flagWords, if set, names the API's fields in its errors as the
	// running command's flags.
	flagWords func(*apiError)
}

// serverURL checks --server and returns it without a trailing slash.
func (o *apiOptions) serverURL() (string, error) {
	u, err := url.Parse(o.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usagef("invalid --server %q: expected a URL such as http://127.0.0.1:8080", o.server)
	}
	if u.Scheme == "http" && !tokenkeeper.IsLoopbackHost(u.Hostname()) && !o.insecure {
		return "", usagef("--server %s uses plain http to a host that is not loopback: the API key or password would cross the network unencrypted; use https, or --allow-insecure-server for a test setup", u.Redacted())
	}
	return strings.TrimRight(o.server, "/"), nil
}

// apiClient returns the client of the broker o selects: with the API key
// if one is set, else with the stored login session for that broker.
func (e *env) apiClient(o *apiOptions) (*apiClient, error) {
	base, err := o.serverURL()
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 60 * time.Second}
	if o.apiKey != "" {
		return &apiClient{base: base, key: o.apiKey, client: hc, flagWords: e.flagWords()}, nil
	}
	store, err := e.sessionStore()
	if err != nil {
		return nil, err
	}
	sess, err := store.get(base)
	if err != nil {
		return nil, err
	}
	if sess == nil {
		return nil, usagef("an API key or a login is required: set $TOKENKEEPER_API_KEY, or run 'tokenkeeper login USER' (for %s)", base)
	}
	sa := &sessionAuth{store: store, server: base, username: sess.Username, hc: hc,
		password: func(user string) (string, error) {
			return e.readLoginPassword(o.passwordStdin, "This command needs a fresh login. Password for "+user)
		}}
	return &apiClient{base: base, sess: sa, client: hc, flagWords: e.flagWords()}, nil
}

// flagWords returns the running command's flagWords, or nil.
func (e *env) flagWords() func(*apiError) {
	if e.cmd == nil {
		return nil
	}
	return e.cmd.flagWords
}

// apiError is a problem answer from the broker.
type apiError struct {
	Type             string `json:"type"`
	Status           int    `json:"status"`
	Title            string `json:"title"`
	Detail           string `json:"detail"`
	Code             string `json:"code"`
	CredentialStatus string `json:"credential_status"`
	LastErrorCode    string `json:"last_error_code"`
}

func (e *apiError) Error() string {
	msg := e.Detail
	if msg == "" {
		msg = e.Title
	}
	return fmt.Sprintf("server answered %d: %s", e.Status, msg)
}

// freshRequired is the problem type of a sensitive request on a session
// that is not fresh.
const freshRequired = "urn:tokenkeeper:problem:fresh_token_required"

// do sends a request with an optional JSON body and decodes a JSON answer
// into out (if not nil). With a session, a refused access token is
// replaced once, and a request that needs a fresh login asks for the
// password once and is sent again.
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	if c.sess == nil {
		return c.send(ctx, method, path, c.key, in, out)
	}
	tok, err := c.sess.accessToken(ctx, "")
	if err != nil {
		return err
	}
	err = c.send(ctx, method, path, tok, in, out)
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		return err
	}
	if ae.Type == freshRequired {
		if err := c.sess.login(ctx); err != nil {
			return err
		}
		tok, err = c.sess.accessToken(ctx, "")
	} else {
		tok, err = c.sess.accessToken(ctx, tok) // expired or revoked early: refresh
	}
	if err != nil {
		return err
	}
	return c.send(ctx, method, path, tok, in, out)
}

// send is one request with the bearer token tok.
func (c *apiClient) send(ctx context.Context, method, path, tok string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the broker at %s: %w", c.base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		ae := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(data, ae) != nil || ae.Detail == "" {
			ae.Detail = strings.TrimSpace(http.StatusText(resp.StatusCode))
		}
		ae.Status = resp.StatusCode
		if c.flagWords != nil {
			c.flagWords(ae)
		}
		return ae
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
	}
	return nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// clientCommand requires n positional arguments of a client command
// (described by what), and returns them with the API client that --server
// and --api-key select.
func (e *env) clientCommand(c *command, ao *apiOptions, n int, what string) ([]string, *apiClient, error) {
	pos, err := c.args(n, what)
	if err != nil {
		return nil, nil, err
	}
	cl, err := e.apiClient(ao)
	if err != nil {
		return nil, nil, err
	}
	return pos, cl, nil
}
