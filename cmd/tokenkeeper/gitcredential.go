package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
)

const gitCredentialAbout = `A git credential helper: git asks it for the password of an HTTPS remote and
gets a credential's current access token (with the user name --username).
Configure it per host:

  git config --global credential.https://git.example.com.helper \
      '!tokenkeeper git-credential --credential github'

or once for several hosts, each mapped to its credential:

  git config --global credential.helper \
      '!tokenkeeper git-credential --map git.example.com=github --map git.corp.example=corp'

A host that is neither mapped nor covered by --credential gets no answer, so git
asks its next helper. Tokens are given only for https, or http to a loopback
address. "store" does nothing; "erase" (git's report that the server refused the
token) asks the broker to refresh the credential if that token is still its
current one. The broker and API key come from --server and $TOKENKEEPER_API_KEY
(or --api-key-file), as for the other client commands.`

// hostMap is a repeatable --map HOST=CREDENTIAL flag.
type hostMap map[string]string

func (m hostMap) String() string { return "" }
func (m hostMap) Type() string   { return "HOST=CREDENTIAL" }

func (m hostMap) Set(v string) error {
	host, cred, ok := strings.Cut(v, "=")
	if !ok || host == "" || cred == "" {
		return fmt.Errorf("expected HOST=CREDENTIAL, got %q", v)
	}
	m[strings.ToLower(host)] = cred
	return nil
}

// maxGitCredentialInput bounds what a helper reads from git.
const maxGitCredentialInput = 64 << 10

func (e *env) cmdGitCredential(c *command) runFunc {
	c.describe("tokenkeeper git-credential (--credential NAME | --map HOST=NAME...) [--username NAME] get|store|erase", gitCredentialAbout)
	c.cc.ValidArgs = []string{"get", "store", "erase"}
	c.cc.ValidArgsFunction = nil
	var ao apiOptions
	ao.register(c)
	var kf apiKeyFileOption
	kf.register(c)
	credential := c.fs.String("credential", "", "the credential for every host git asks about")
	hosts := hostMap{}
	c.fs.Var(hosts, "map", "HOST=CREDENTIAL: the credential of one host (HOST may include :PORT); repeatable")
	username := c.fs.String("username", "x-access-token", "the user name given to git with the token")
	c.envless("credential", "map", "username")
	return func(args []string) error {
		pos, err := c.args(1, "one operation: get, store or erase")
		if err != nil {
			return err
		}
		op := pos[0]
		if op != "get" && op != "store" && op != "erase" {
			return usagef("git-credential: unknown operation %q: expected get, store or erase", op)
		}
		if *credential == "" && len(hosts) == 0 {
			return usagef("git-credential: give --credential NAME or --map HOST=NAME")
		}
		if strings.ContainsAny(*username, "\n\x00") {
			return usagef("git-credential: --username must be one line")
		}
		attrs, err := readGitAttrs(e.stdin)
		if err != nil {
			return fmt.Errorf("git-credential: %w", err)
		}
		if op == "store" {
			return nil // the broker keeps the token; nothing to store
		}
		name := credentialForGit(attrs, *credential, hosts)
		if name == "" {
			return nil // not ours: git asks its next helper
		}
		if err := kf.apply(&ao); err != nil {
			return err
		}
		cl, err := e.apiClient(&ao)
		if err != nil {
			return err
		}
		base := "/v1/credentials/" + url.PathEscape(name)
		if op == "erase" {
			if attrs["password"] == "" {
				return nil
			}
			// Refreshes only if the rejected token is still the current one.
			if err := cl.do(e.ctx, "POST", base+"/refresh", map[string]string{"rejected_token": attrs["password"]}, nil); err != nil {
				fmt.Fprintf(e.stderr, "tokenkeeper git-credential: reporting the rejected token of %s: %v\n", name, err)
			}
			return nil
		}
		var tv tokenView
		if err := cl.do(e.ctx, "GET", base+"/token", nil, &tv); err != nil {
			return fmt.Errorf("git-credential: get the token of %s: %w", name, err)
		}
		if tv.AccessToken == "" || strings.ContainsAny(tv.AccessToken, "\n\x00") {
			return fmt.Errorf("git-credential: the broker's answer for %s holds no usable token", name)
		}
		out := fmt.Sprintf("username=%s\npassword=%s\n", *username, tv.AccessToken)
		if tv.ExpiresAt != nil {
			// Git 2.41 and later forget the password at this time.
			out += fmt.Sprintf("password_expiry_utc=%d\n", tv.ExpiresAt.Unix())
		}
		_, err = io.WriteString(e.stdout, out)
		return err
	}
}

// readGitAttrs reads git's key=value lines up to a blank line or the end.
func readGitAttrs(r io.Reader) (map[string]string, error) {
	attrs := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, maxGitCredentialInput))
	sc.Buffer(make([]byte, 0, 4096), maxGitCredentialInput)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("malformed input line from git (expected key=value)")
		}
		attrs[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read input from git: %w", err)
	}
	if u := attrs["url"]; u != "" && attrs["host"] == "" {
		if pu, err := url.Parse(u); err == nil {
			attrs["protocol"], attrs["host"] = pu.Scheme, pu.Host
		}
	}
	return attrs, nil
}

// credentialForGit returns the credential to answer git's request with, or
// "" if the request is not for us: an unmapped host, or a protocol that
// would send the token in clear text to another machine.
func credentialForGit(attrs map[string]string, fallback string, hosts hostMap) string {
	host := strings.ToLower(attrs["host"])
	switch attrs["protocol"] {
	case "https":
	case "http":
		if !loopbackHost(host) {
			return ""
		}
	default:
		return ""
	}
	if name, ok := hosts[host]; ok {
		return name
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		if name, ok := hosts[h]; ok {
			return name
		}
	}
	return fallback
}

// loopbackHost reports whether host (with an optional port) is a loopback
// address or localhost.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
