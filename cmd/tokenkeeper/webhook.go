package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type webhookOut struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	CreatedAt time.Time `json:"created_at"`
	Secret    string    `json:"secret,omitempty"`
}

func (e *env) cmdWebhookAdd(c *command) runFunc {
	c.describe("tokenkeeper webhook add URL --events a,b [--json]",
		`Registers a webhook endpoint and prints its signing secret once. Events:
credential.connected, credential.needs_reauth, credential.error,
credential.recovered, credential.deleted, connect_session.failed. Deliveries
are signed as the Standard Webhooks specification says (webhook-id,
webhook-timestamp, webhook-signature); verify them with the secret.
URLs on loopback, private, link-local or metadata addresses are refused
unless the broker runs with --webhook-allow-private.`)
	var ao apiOptions
	ao.register(c)
	c.oldNameFlag("url", "the endpoint's URL")
	events := c.fs.String("events", "", "event types to send, comma separated")
	asJSON := c.fs.Bool("json", false, "print JSON")
	c.envless("url", "events")
	return func(args []string) error {
		u, err := c.nameArg("url", "the endpoint's URL (https)")
		if err != nil {
			return err
		}
		cl, err := e.apiClient(&ao)
		if err != nil {
			return err
		}
		var out webhookOut
		if err := cl.do(e.ctx, "POST", "/v1/webhooks", map[string]any{"url": u, "events": splitList(*events)}, &out); err != nil {
			return fmt.Errorf("add webhook: %w", err)
		}
		if *asJSON {
			return printJSON(e.stdout, out)
		}
		fmt.Fprintf(e.stdout, "Added webhook %s for %s. Its signing secret is shown only this once:\n\n    %s\n\n", out.ID, strings.Join(out.Events, ", "), out.Secret)
		return nil
	}
}

func (e *env) cmdWebhookList(c *command) runFunc {
	c.describe("tokenkeeper webhook list [--json]", "Lists webhook endpoints (never their secrets).")
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		_, cl, err := e.clientCommand(c, &ao, 0, "no arguments")
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := cl.do(e.ctx, "GET", "/v1/webhooks", nil, &raw); err != nil {
			return fmt.Errorf("list webhooks: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, raw)
		}
		var list struct {
			Webhooks []webhookOut `json:"webhooks"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tURL\tEVENTS\tCREATED")
		for _, w := range list.Webhooks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", w.ID, w.URL, strings.Join(w.Events, ","), w.CreatedAt.Local().Format(time.DateTime))
		}
		return tw.Flush()
	}
}

func (e *env) cmdWebhookTest(c *command) runFunc {
	c.describe("tokenkeeper webhook test ID [--json]",
		"Queues a signed webhook.test delivery to the endpoint; see 'tokenkeeper webhook deliveries ID' for the outcome.")
	var ao apiOptions
	ao.register(c)
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		pos, cl, err := e.clientCommand(c, &ao, 1, "the webhook's id")
		if err != nil {
			return err
		}
		var out deliveryOut
		if err := cl.do(e.ctx, "POST", "/v1/webhooks/"+url.PathEscape(pos[0])+"/test", map[string]any{}, &out); err != nil {
			return fmt.Errorf("test webhook: %w", err)
		}
		if *asJSON {
			return printJSON(e.stdout, out)
		}
		fmt.Fprintf(e.stdout, "Queued test delivery %d (message %s).\n", out.ID, out.MessageID)
		return nil
	}
}

type deliveryOut struct {
	ID             int64           `json:"id"`
	MessageID      string          `json:"message_id"`
	EventType      string          `json:"event_type"`
	CredentialID   string          `json:"credential_id,omitempty"`
	Status         string          `json:"status"`
	Attempts       int             `json:"attempts"`
	LastStatusCode int             `json:"last_status_code,omitempty"`
	LastError      string          `json:"last_error,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	LastAttemptAt  *time.Time      `json:"last_attempt_at,omitempty"`
	NextAttemptAt  *time.Time      `json:"next_attempt_at,omitempty"`
	FinishedAt     *time.Time      `json:"finished_at,omitempty"`
	Payload        json.RawMessage `json:"payload"`
}

func (e *env) cmdWebhookDeliveries(c *command) runFunc {
	c.describe("tokenkeeper webhook deliveries ID [--limit N] [--json]", "Shows an endpoint's delivery log, newest first.")
	var ao apiOptions
	ao.register(c)
	limit := c.fs.Int("limit", 50, "deliveries to show, at most 1000")
	c.envless("limit")
	asJSON := c.fs.Bool("json", false, "print JSON")
	return func(args []string) error {
		pos, cl, err := e.clientCommand(c, &ao, 1, "the webhook's id")
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := cl.do(e.ctx, "GET", "/v1/webhooks/"+url.PathEscape(pos[0])+"/deliveries?limit="+strconv.Itoa(*limit), nil, &raw); err != nil {
			return fmt.Errorf("list webhook deliveries: %w", err)
		}
		if *asJSON {
			return printRaw(e.stdout, raw)
		}
		var list struct {
			Deliveries []deliveryOut `json:"deliveries"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tEVENT\tSTATUS\tATTEMPTS\tLAST\tCREATED\tNEXT")
		for _, d := range list.Deliveries {
			last := dash(d.LastError)
			if d.LastStatusCode != 0 && d.LastError == "" {
				last = strconv.Itoa(d.LastStatusCode)
			}
			next := "-"
			if d.NextAttemptAt != nil {
				next = d.NextAttemptAt.Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n", d.ID, d.EventType, d.Status, d.Attempts, last, d.CreatedAt.Local().Format(time.DateTime), next)
		}
		return tw.Flush()
	}
}
