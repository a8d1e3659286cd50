package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// connectSessionView is the part of a connect session the CLI prints.
type connectSessionView struct {
	ID         string    `json:"id"`
	Provider   string    `json:"provider"`
	Credential string    `json:"credential"`
	Reconnect  bool      `json:"reconnect"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason"`
	Message    string    `json:"message"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// errConnectFailed is a connect session that ended without a grant.
var errConnectFailed = errors.New("connect failed")

func (e *env) cmdConnect(c *command) runFunc {
	c.describe("tokenkeeper connect PROVIDER [--name N] [--scopes S] [--open] [--device]",
		`Obtains a grant from PROVIDER and stores it in a credential: creates a
connect session, prints its single-use link (valid 30 minutes) to open in a
browser, or with --device the user code and the page to enter it on, and
waits until the session ends. A --name that exists is reconnected: its
grant is replaced in place. Exits non-zero naming the reason on failure
(access_denied, expired, invalid_grant, ...).`)
	var ao apiOptions
	ao.register(c)
	name := c.fs.String("name", "", "the credential to create or reconnect (default: PROVIDER-END_USER_ID, or PROVIDER and a random suffix)")
	endUser := c.fs.String("end-user-id", "", "the end user the credential belongs to (your application's id for them)")
	scopes := c.fs.String("scopes", "", "scopes to ask for, comma or space separated (default: the provider's)")
	returnTo := c.fs.String("return-to", "", "where the browser goes afterwards (must be on the broker's --connect-return-to list)")
	device := c.fs.Bool("device", false, "use the device flow (RFC 8628): enter a code on another device")
	open := c.fs.Bool("open", false, "open the link in this desktop's browser")
	noWait := c.fs.Bool("no-wait", false, "print the link or code and return at once")
	poll := c.fs.Duration("poll", time.Second, "how often to ask the broker whether the session ended")
	asJSON := c.fs.Bool("json", false, "print JSON (the session as created, then as it ended)")
	c.envless("name", "end-user-id", "scopes", "return-to", "device", "open", "no-wait", "poll")
	return func(args []string) error {
		pos, cl, err := e.clientCommand(c, &ao, 1, "the provider name")
		if err != nil {
			return err
		}
		if *poll < 100*time.Millisecond {
			return usagef("--poll must be at least 100ms")
		}
		body := map[string]any{"provider": pos[0]}
		if *name != "" {
			body["name"] = *name
		}
		if *endUser != "" {
			body["end_user_id"] = *endUser
		}
		if s := splitList(*scopes); len(s) > 0 {
			body["scopes"] = s
		}
		if *returnTo != "" {
			body["return_to"] = *returnTo
		}
		var created map[string]any
		path := "/v1/connect/sessions"
		if *device {
			path = "/v1/connect/device"
		}
		if err := cl.do(e.ctx, "POST", path, body, &created); err != nil {
			return fmt.Errorf("connect %s: %w", pos[0], err)
		}
		id, _ := created["id"].(string)
		if *asJSON {
			raw, _ := json.Marshal(created)
			if err := printRaw(e.stdout, raw); err != nil {
				return err
			}
		} else {
			what := "Connect"
			if created["reconnect"] == true {
				what = "Reconnect"
			}
			if *device {
				fmt.Fprintf(e.stdout, "%s credential %q: on any device, open\n\n    %v\n\nand enter the code\n\n    %v\n\n", what, created["credential"], created["verification_uri"], created["user_code"])
				if u, ok := created["verification_uri_complete"].(string); ok && u != "" {
					fmt.Fprintf(e.stdout, "(or open %s, which carries the code)\n", u)
				}
			} else {
				fmt.Fprintf(e.stdout, "%s credential %q: open this link in a browser (single use, until %v):\n\n    %v\n\n", what, created["credential"], created["expires_at"], created["url"])
			}
		}
		if *open {
			target, _ := created["url"].(string)
			if *device {
				target, _ = created["verification_uri_complete"].(string)
				if target == "" {
					target, _ = created["verification_uri"].(string)
				}
			}
			if err := openBrowser(target); err != nil {
				fmt.Fprintf(e.stderr, "warning: cannot open a browser (%v); open the link yourself\n", err)
			}
		}
		if *noWait {
			return nil
		}
		if !*asJSON {
			fmt.Fprintln(e.stdout, "Waiting for the session to end (Ctrl-C stops waiting; the link stays valid)...")
		}
		for {
			var raw json.RawMessage
			if err := cl.do(e.ctx, "GET", "/v1/connect/sessions/"+id, nil, &raw); err != nil {
				return fmt.Errorf("connect session %s: %w", id, err)
			}
			var s connectSessionView
			if err := json.Unmarshal(raw, &s); err != nil {
				return err
			}
			if s.Status != "pending" {
				if *asJSON {
					if err := printRaw(e.stdout, raw); err != nil {
						return err
					}
				}
				if s.Status == "connected" {
					if !*asJSON {
						fmt.Fprintf(e.stdout, "Connected: credential %q of provider %q is active.\n", s.Credential, s.Provider)
					}
					return nil
				}
				msg := s.Reason
				if s.Message != "" {
					msg += ": " + s.Message
				}
				return fmt.Errorf("%w: %s", errConnectFailed, strings.TrimSpace(msg))
			}
			select {
			case <-e.ctx.Done():
				return e.ctx.Err()
			case <-time.After(*poll):
			}
		}
	}
}

// openBrowser opens url in the desktop's browser.
func openBrowser(url string) error {
	if url == "" {
		return errors.New("nothing to open")
	}
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}
