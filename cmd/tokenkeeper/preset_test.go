package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/internal/catalog"
)

// TestProviderPresetsCLI lists the presets, adds providers from presets
// against serve, and checks that bad presets and missing template variables
// are refused with what is needed and create nothing.
func TestProviderPresetsCLI(t *testing.T) {
	sb := startServe(t, nil, "--database", filepath.Join(t.TempDir(), "tk.db"))
	env := map[string]string{"TOKENKEEPER_SERVER": sb.url, "TOKENKEEPER_API_KEY": sb.key}
	cli := func(stdin string, args ...string) (string, error) {
		var out, errb syncBuffer
		err := run(context.Background(), append([]string{"tokenkeeper"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
		s := out.String() + errb.String()
		if err != nil {
			s += err.Error()
		}
		return s, err
	}

	out, err := cli("", "provider", "presets")
	if err != nil || !strings.Contains(out, "microsoft") || !strings.Contains(out, "tenant") || !strings.Contains(out, "JSON request body") {
		t.Fatalf("provider presets: %v %s", err, out)
	}
	out, err = cli("", "provider", "presets", "--json")
	var list struct {
		Presets []struct {
			Name   string   `json:"name"`
			Quirks []string `json:"quirks"`
			Docs   []string `json:"docs"`
		} `json:"presets"`
	}
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Presets) != len(catalog.All()) {
		t.Fatalf("provider presets --json: %v %.300s", err, out)
	}
	for _, p := range list.Presets {
		if len(p.Docs) == 0 {
			t.Errorf("preset %s cites no documentation", p.Name)
		}
	}

	secret := "preset-secret-" + randomString()
	out, err = cli(secret+"\n", "provider", "add", "gg", "--preset", "google", "--client-id", "app.apps", "--client-secret-file", "-", "--json")
	var p map[string]any
	if err != nil || json.Unmarshal([]byte(out), &p) != nil {
		t.Fatalf("provider add --preset google: %v %s", err, out)
	}
	ap, _ := p["authorize_params"].(map[string]any)
	if p["token_url"] != "https://oauth2.googleapis.com/token" || p["auth_style"] != "body" || ap["access_type"] != "offline" || ap["prompt"] != "consent" ||
		p["has_client_secret"] != true || strings.Contains(out, secret) {
		t.Errorf("google preset not applied: %s", out)
	}

	// A missing template variable: refused naming it, nothing created.
	out, err = cli(secret+"\n", "provider", "add", "ms", "--preset", "microsoft", "--client-id", "x", "--client-secret-file", "-")
	if err == nil || !strings.Contains(out, "tenant (") {
		t.Errorf("microsoft without tenant: %v %s", err, out)
	}
	if out, err := cli("", "provider", "show", "ms"); err == nil {
		t.Errorf("a refused preset created a provider: %s", out)
	}
	out, err = cli(secret+"\n", "provider", "add", "ms", "--preset", "microsoft", "--var", "tenant=contoso.onmicrosoft.com",
		"--client-id", "x", "--client-secret-file", "-", "--scopes", "offline_access,openid", "--json")
	if err != nil || !strings.Contains(out, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token") ||
		!strings.Contains(out, `"offline_access"`) || strings.Contains(out, "User.Read") {
		t.Errorf("microsoft with tenant and own scopes: %v %s", err, out)
	}
	// A value that would move the host is refused.
	out, err = cli(secret+"\n", "provider", "add", "ms2", "--preset", "microsoft", "--var", "tenant=evil.example/x",
		"--client-id", "x", "--client-secret-file", "-")
	if err == nil || !strings.Contains(out, "tenant") {
		t.Errorf("tenant with a slash: %v %s", err, out)
	}
	// An unknown preset: refused with the list.
	out, err = cli(secret+"\n", "provider", "add", "zz", "--preset", "nosuch", "--client-id", "x", "--client-secret-file", "-")
	if err == nil || !strings.Contains(out, "unknown preset") || !strings.Contains(out, "salesforce") {
		t.Errorf("unknown preset: %v %s", err, out)
	}
	if _, err := cli("", "provider", "add", "zz", "--var", "tenant=x", "--token-url", "https://example.com/t", "--client-id", "x"); err == nil {
		t.Error("--var without --preset accepted")
	}
	out, err = cli("", "provider", "list")
	if err != nil || strings.Contains(out, "zz") || strings.Contains(out, "ms2") || !strings.Contains(out, "gg") {
		t.Errorf("provider list after refusals: %v %s", err, out)
	}
}
