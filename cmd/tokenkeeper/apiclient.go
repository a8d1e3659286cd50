package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// apiOptions select the broker a client command talks to.
type apiOptions struct {
	server   string
	apiKey   string
	insecure bool // plain http off loopback allowed
}

func (o *apiOptions) register(c *command) {
	c.fs.StringVar(&o.server, "server", "http://127.0.0.1:8080", "broker URL")
	c.fs.BoolVar(&o.insecure, "allow-insecure-server", false, "allow a plain-http --server that is not on loopback (the API key would cross the network unencrypted)")
	c.fs.StringVar(&o.apiKey, "api-key", "", "API key")
	c.inlineSecret("api-key", "$TOKENKEEPER_API_KEY")
}

// apiClient calls the broker's HTTP API.
type apiClient struct {
	base   string
	key    string
	client *http.Client
}

func (o *apiOptions) client() (*apiClient, error) {
	u, err := url.Parse(o.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("invalid --server %q: expected a URL such as http://127.0.0.1:8080", o.server)
	}
	if u.Scheme == "http" && !tokenkeeper.IsLoopbackHost(u.Hostname()) && !o.insecure {
		return nil, usagef("--server %s uses plain http to a host that is not loopback: the API key would cross the network unencrypted; use https, or --allow-insecure-server for a test setup", u.Redacted())
	}
	if o.apiKey == "" {
		return nil, usagef("an API key is required: set $TOKENKEEPER_API_KEY")
	}
	return &apiClient{base: strings.TrimRight(o.server, "/"), key: o.apiKey, client: &http.Client{Timeout: 60 * time.Second}}, nil
}

// apiError is a problem answer from the broker.
type apiError struct {
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

// do sends a request with an optional JSON body and decodes a JSON answer
// into out (if not nil).
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
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
	req.Header.Set("Authorization", "Bearer "+c.key)
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

// clientCommand parses a client command's arguments, requiring n positional
// ones (described by what), and returns them with the API client that
// --server and --api-key select.
func (e *env) clientCommand(c *command, ao *apiOptions, args []string, n int, what string) ([]string, *apiClient, error) {
	if err := c.parse(args, e.getenv); err != nil {
		return nil, nil, err
	}
	pos, err := c.args(n, what)
	if err != nil {
		return nil, nil, err
	}
	cl, err := ao.client()
	if err != nil {
		return nil, nil, err
	}
	return pos, cl, nil
}
