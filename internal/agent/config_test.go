package agent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConfigErrorsNameLineAndReason(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.json")
	cases := []struct {
		name, json string
		line       int
		want       string
	}{
		{"bad template", `{
  "sinks": [
    {"credential": "a", "path": "a.tok"},
    {"credential": "b", "path": "b.tok",
     "template": "xml"}
  ]
}`, 4, `sink "b": template "xml": expected raw, header, json or env:VAR`},
		{"bad env var", `{"sinks": [
  {"credential": "a", "path": "a.env", "template": "env:1X"}]}`, 2, `"1X" is not a variable name`},
		{"unknown sink field", `{"sinks": [
 {"credential": "a", "path": "a", "tempalte": "raw"}]}`, 2, `unknown field "tempalte"`},
		{"unknown top field", `{
  "server": "http://x",
  "sink": []}`, 3, `unknown field "sink"`},
		{"secret inline", `{
  "api_key": "tk_x", "sinks": []}`, 2, `secrets are not written in the configuration`},
		{"syntax", `{"sinks": [
  {"credential": "a", "path": "a",}
]}`, 2, "invalid JSON"},
		{"wrong type", `{"sinks": [
  {"credential": "a", "path": "a"},

  {"credential": "b", "path": "b", "command": "reload.sh"}]}`, 4, "command must be a list of strings"},
		{"no credential", `{"sinks": [{"path": "a"}]}`, 1, "sink 1: credential is required"},
		{"no path", "{\"sinks\": [\n\n{\"credential\": \"a\"}]}", 3, `sink "a": path is required`},
		{"bad mode", `{"sinks": [{"credential": "a", "path": "a", "mode": "0666"}]}`, 1, "must not be writable by everyone"},
		{"mode not octal", `{"sinks": [{"credential": "a", "path": "a", "mode": "rw"}]}`, 1, "expected octal"},
		{"owner cannot read", `{"sinks": [{"credential": "a", "path": "a", "mode": "0200"}]}`, 1, "owner must be able to read"},
		{"bad on_expiry", `{"sinks": [{"credential": "a", "path": "a", "on_expiry": "keep"}]}`, 1, `on_expiry "keep"`},
		{"empty command", `{"sinks": [{"credential": "a", "path": "a", "command": []}]}`, 1, "command must be a non-empty list"},
		{"duplicate path", `{"sinks": [
  {"credential": "a", "path": "x"},
  {"credential": "b", "path": "x"}]}`, 3, "also the path of the sink on line 2"},
		{"no sinks", `{"server": "http://x"}`, 0, "no sinks"},
		{"not an object", `[1]`, 1, "must be a JSON object"},
		{"trailing data", "{\"sinks\": [{\"credential\": \"a\", \"path\": \"a\"}]}\n{}", 2, "unexpected data after"},
		{"truncated", "{\"sinks\": [\n{\"credential\": \"a\"", 2, "unexpected end"},
		{"slash in credential", `{"sinks": [{"credential": "../a", "path": "a"}]}`, 1, "may not contain '/'"},
		{"twice", "{\"server\": \"a\",\n\"server\": \"b\", \"sinks\": []}", 2, `"server" is given twice`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.json), file)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want a *ConfigError", err, err)
			}
			if ce.Line != c.line {
				t.Errorf("line %d, want %d (%v)", ce.Line, c.line, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), file+":") {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
}

func TestParseConfigDefaultsAndRelativePaths(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.json")
	cfg, err := ParseConfig([]byte(`{
  "server": "http://127.0.0.1:8080",
  "api_key_file": "/etc/key",
  "sinks": [
    {"credential": "github", "path": "out/token"},
    {"credential": "pay", "path": "/run/pay.env", "template": "env:PAY_TOKEN", "mode": "0640",
     "on_expiry": "empty", "command": ["systemctl", "reload", "app"]}
  ]
}`), file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server != "http://127.0.0.1:8080" || cfg.APIKeyFile != "/etc/key" || len(cfg.Sinks) != 2 {
		t.Fatalf("config %+v", cfg)
	}
	s0, s1 := cfg.Sinks[0], cfg.Sinks[1]
	if s0.Path != filepath.Join(dir, "out/token") || s0.Template != "raw" || s0.Mode != "0600" || s0.OnExpiry != "remove" || s0.Line != 5 {
		t.Errorf("first sink %+v", s0)
	}
	if s1.Path != "/run/pay.env" || s1.Mode != "0640" || s1.OnExpiry != "empty" || len(s1.Command) != 3 || s1.Line != 6 {
		t.Errorf("second sink %+v", s1)
	}
}

func TestRender(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct{ tmpl, want string }{
		{"raw", "tok"},
		{"header", "Authorization: Bearer tok\n"},
		{"json", `{"access_token":"tok","token_type":"Bearer","expires_at":"2030-01-02T03:04:05Z"}` + "\n"},
		{"env:GH_TOKEN", "GH_TOKEN=tok\n"},
	}
	for _, c := range cases {
		got, err := render(c.tmpl, "tok", exp)
		if err != nil || string(got) != c.want {
			t.Errorf("render(%q) = %q, %v; want %q", c.tmpl, got, err, c.want)
		}
	}
	var v map[string]string
	got, _ := render("json", "tok", exp)
	if err := json.Unmarshal(got, &v); err != nil || v["access_token"] != "tok" {
		t.Errorf("json template is not JSON: %s", got)
	}
	for _, bad := range []string{"", "Raw", "env:", "env:A-B", "{{.Token}}"} {
		if _, err := render(bad, "tok", exp); err == nil {
			t.Errorf("render(%q) accepted", bad)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tok")
	for i, data := range []string{"first", "second", ""} {
		if err := writeFileAtomic(p, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != data {
			t.Fatalf("write %d: read %q, %v", i, got, err)
		}
		fi, _ := os.Stat(p)
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("mode %v, want 0640", fi.Mode().Perm())
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := removeFile(p); err != nil {
		t.Fatal(err)
	}
	if err := removeFile(p); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
}

func TestCheckWritable(t *testing.T) {
	dir := t.TempDir()
	if err := checkWritable(filepath.Join(dir, "tok")); err != nil {
		t.Errorf("a writable path: %v", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	for _, p := range []string{filepath.Join(dir, "missing", "tok"), filepath.Join(file, "tok"), dir} {
		if err := checkWritable(p); err == nil {
			t.Errorf("checkWritable(%s) accepted", p)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the check left files: %v", ents)
	}
}

func TestReplacementWait(t *testing.T) {
	for _, c := range []struct{ left, want time.Duration }{
		{3 * time.Second, 1500 * time.Millisecond},
		{time.Second, time.Second},
		{time.Hour, 5 * time.Second},
		{0, 0},
		{-time.Second, 0},
	} {
		if got := replacementWait(c.left); got != c.want {
			t.Errorf("replacementWait(%v) = %v, want %v", c.left, got, c.want)
		}
	}
}

func TestChildEnvDropsSecrets(t *testing.T) {
	got := childEnv([]string{"PATH=/bin", "TOKENKEEPER_API_KEY=tk_x", "TOKENKEEPER_SERVER=http://b", "TOKENKEEPER_CLIENT_SECRET=s"})
	if strings.Join(got, " ") != "PATH=/bin TOKENKEEPER_SERVER=http://b" {
		t.Errorf("childEnv = %v", got)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"sinks": [{"credential": "a", "path": "/tmp/a", "template": "env:X", "command": ["true"]}]}`))
	f.Add([]byte(`{"server": "http://x", "sinks": [{"credential": "a", "path": "a", "mode": "0640"}]}`))
	f.Add([]byte(`{"sinks": [`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data, "/etc/agent.json")
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *ConfigError", err)
			}
			if ce.Line < 0 || ce.Line > strings.Count(string(data), "\n")+1 {
				t.Fatalf("line %d out of range", ce.Line)
			}
			return
		}
		if len(cfg.Sinks) == 0 {
			t.Fatal("accepted without sinks")
		}
		for _, s := range cfg.Sinks {
			if _, err := render(s.Template, "t", time.Time{}); err != nil {
				t.Fatalf("accepted template %q", s.Template)
			}
			if !filepath.IsAbs(s.Path) {
				t.Fatalf("relative path %q", s.Path)
			}
		}
	})
}
