package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Config is an agent's configuration: where tokens come from and the files
// they go to. It is read from a JSON file (ParseConfig, LoadConfig) or built
// from flags.
//
// JSON was chosen over YAML because the standard library reads it strictly
// (unknown fields are errors), it is the format of the broker's API, and it
// needs no dependency; the parser still reports the line of every error.
type Config struct {
	// Server is the broker's base URL.
	Server string `json:"server,omitempty"`
	// APIKeyFile holds the API key to read tokens with
	// (GET /v1/credentials/{name}/token).
	APIKeyFile string `json:"api_key_file,omitempty"`
	// ClientID and ClientSecretFile make the agent a service client of the
	// broker's /oauth2/token endpoint instead (scope=credential:NAME).
	ClientID         string `json:"client_id,omitempty"`
	ClientSecretFile string `json:"client_secret_file,omitempty"`
	// Sinks are the files to keep fresh.
	Sinks []Sink `json:"sinks"`

	// APIKey and ClientSecret are the secrets themselves, given by the
	// command line or the environment, or read from the files above by
	// Resolve. They are never read from the configuration file.
	APIKey       string `json:"-"`
	ClientSecret string `json:"-"`

	// File is the configuration file's name, for error messages.
	File string `json:"-"`
}

// Sink is one file kept fresh with one credential's token.
type Sink struct {
	// Credential is the name of the credential at the broker. Required.
	Credential string `json:"credential"`
	// Path is the file to write. Relative paths are relative to the
	// configuration file's directory. Required.
	Path string `json:"path"`
	// Template is what the file holds: "raw" (the token alone, the
	// default), "header" (an "Authorization: Bearer ..." line), "json"
	// ({"access_token", "token_type", "expires_at"}) or "env:VAR" (a
	// VAR=token line for an environment file).
	Template string `json:"template,omitempty"`
	// Mode is the file's permission bits in octal; "0600" by default.
	Mode string `json:"mode,omitempty"`
	// Command is run (without a shell) after each change of the file.
	Command []string `json:"command,omitempty"`
	// OnExpiry is what happens to the file when its token expires and no
	// new one could be obtained, and when the agent stops: "remove" (the
	// default) deletes it, "empty" leaves an empty file.
	OnExpiry string `json:"on_expiry,omitempty"`

	// Line is the line of the sink in the configuration file (0 for flags).
	Line int `json:"-"`
}

// On-expiry actions.
const (
	OnExpiryRemove = "remove"
	OnExpiryEmpty  = "empty"
)

// ConfigError is an error in the configuration, with its place.
type ConfigError struct {
	File string // the configuration file, or "" for flags
	Line int    // 0 if unknown
	Msg  string
}

func (e *ConfigError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return e.File + ": " + e.Msg
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// LoadConfig reads and parses the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(data, path)
}

const maxConfigSize = 1 << 20

// ParseConfig parses a JSON configuration. file names it in errors and
// anchors relative sink paths; it may be "". Every error names the line and
// the reason. It checks the form of each sink (Validate), not whether its
// file can be written or its credential exists: see Agent.Start.
func ParseConfig(data []byte, file string) (*Config, error) {
	cfg := &Config{File: file}
	fail := func(off int64, format string, args ...any) error {
		return &ConfigError{File: file, Line: lineAt(data, off), Msg: fmt.Sprintf(format, args...)}
	}
	if len(data) > maxConfigSize {
		return nil, &ConfigError{File: file, Msg: "the file is larger than 1 MiB"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	decodeErr := func(err error, start int64) error {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return fail(se.Offset, "invalid JSON: %v", se)
		case errors.As(err, &te):
			if te.Field != "" {
				return fail(te.Offset, "%s must be %s, not a JSON %s", te.Field, typeName(te.Type.String()), te.Value)
			}
			return fail(te.Offset, "expected %s, not a JSON %s", typeName(te.Type.String()), te.Value)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return fail(int64(len(data)), "unexpected end of the file")
		}
		return fail(start, "%v", strings.TrimPrefix(err.Error(), "json: "))
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, decodeErr(err, 0)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fail(0, "the configuration must be a JSON object")
	}
	seen := map[string]bool{}
	sawSinks := false
	for dec.More() {
		keyOff := nextOffset(data, dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return nil, decodeErr(err, keyOff)
		}
		key, _ := tok.(string)
		if seen[key] {
			return nil, fail(keyOff, "%q is given twice", key)
		}
		seen[key] = true
		valOff := nextOffset(data, dec.InputOffset())
		var dst any
		switch key {
		case "server":
			dst = &cfg.Server
		case "api_key_file":
			dst = &cfg.APIKeyFile
		case "client_id":
			dst = &cfg.ClientID
		case "client_secret_file":
			dst = &cfg.ClientSecretFile
		case "api_key", "client_secret":
			return nil, fail(keyOff, "%q: secrets are not written in the configuration; use %s_file or the environment", key, key)
		case "sinks":
			sawSinks = true
			if err := parseSinks(dec, data, cfg, fail, decodeErr); err != nil {
				return nil, err
			}
			continue
		default:
			return nil, fail(keyOff, "unknown field %q (expected server, api_key_file, client_id, client_secret_file or sinks)", key)
		}
		if err := dec.Decode(dst); err != nil {
			return nil, decodeErr(err, valOff)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, decodeErr(err, dec.InputOffset())
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail(nextOffset(data, dec.InputOffset()), "unexpected data after the configuration object")
	}
	if !sawSinks || len(cfg.Sinks) == 0 {
		return nil, &ConfigError{File: file, Msg: `no sinks: give at least one {"credential", "path"} in "sinks"`}
	}
	base := ""
	if file != "" {
		base = filepath.Dir(file)
	}
	for i := range cfg.Sinks {
		s := &cfg.Sinks[i]
		if s.Path != "" && !filepath.IsAbs(s.Path) && base != "" {
			s.Path = filepath.Join(base, s.Path)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func parseSinks(dec *json.Decoder, data []byte, cfg *Config, fail func(int64, string, ...any) error, decodeErr func(error, int64) error) error {
	start := nextOffset(data, dec.InputOffset())
	tok, err := dec.Token()
	if err != nil {
		return decodeErr(err, start)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fail(start, `"sinks" must be a list of objects`)
	}
	for dec.More() {
		off := nextOffset(data, dec.InputOffset())
		var s Sink
		if err := dec.Decode(&s); err != nil {
			return decodeErr(err, off)
		}
		s.Line = lineAt(data, off)
		cfg.Sinks = append(cfg.Sinks, s)
	}
	_, err = dec.Token() // ']'
	if err != nil {
		return decodeErr(err, dec.InputOffset())
	}
	return nil
}

// typeName names a Go type in the words of the configuration.
func typeName(t string) string {
	switch {
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "[]"):
		return "a list of strings"
	case strings.Contains(t, "Sink"):
		return "an object"
	}
	return t
}

// nextOffset skips white space, commas and colons from off: where the next
// value starts.
func nextOffset(data []byte, off int64) int64 {
	for off < int64(len(data)) {
		switch data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
		default:
			return off
		}
	}
	return off
}

// lineAt returns the 1-based line of byte offset off.
func lineAt(data []byte, off int64) int {
	off = min(max(off, 0), int64(len(data)))
	return bytes.Count(data[:off], []byte("\n")) + 1
}

var envVarRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks the form of the configuration and fills in defaults
// (template raw, mode 0600, on_expiry remove).
func (c *Config) Validate() error {
	fail := func(line int, format string, args ...any) error {
		return &ConfigError{File: c.File, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	paths := map[string]int{}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		what := fmt.Sprintf("sink %d", i+1)
		if s.Credential != "" {
			what = fmt.Sprintf("sink %q", s.Credential)
		}
		switch {
		case s.Credential == "":
			return fail(s.Line, "%s: credential is required", what)
		case strings.ContainsAny(s.Credential, "/?#% \t\r\n"):
			return fail(s.Line, "%s: the credential name may not contain '/', '?', '#', '%%' or spaces", what)
		case s.Path == "":
			return fail(s.Line, "%s: path is required", what)
		}
		abs, err := filepath.Abs(s.Path)
		if err != nil {
			return fail(s.Line, "%s: path %q: %v", what, s.Path, err)
		}
		s.Path = abs
		if l, dup := paths[abs]; dup {
			return fail(s.Line, "%s: path %s is also the path of the sink on line %d", what, abs, l)
		}
		paths[abs] = s.Line
		if s.Template == "" {
			s.Template = "raw"
		}
		if _, err := render(s.Template, "x", time.Time{}); err != nil {
			return fail(s.Line, "%s: %v", what, err)
		}
		if s.Mode == "" {
			s.Mode = "0600"
		}
		if _, err := parseMode(s.Mode); err != nil {
			return fail(s.Line, "%s: %v", what, err)
		}
		if s.OnExpiry == "" {
			s.OnExpiry = OnExpiryRemove
		}
		if s.OnExpiry != OnExpiryRemove && s.OnExpiry != OnExpiryEmpty {
			return fail(s.Line, "%s: on_expiry %q: expected %q or %q", what, s.OnExpiry, OnExpiryRemove, OnExpiryEmpty)
		}
		if s.Command != nil && (len(s.Command) == 0 || s.Command[0] == "") {
			return fail(s.Line, "%s: command must be a non-empty list: the program and its arguments (no shell)", what)
		}
	}
	return nil
}

// parseMode parses octal permission bits such as "0600".
func parseMode(s string) (os.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("mode %q: expected octal permission bits such as \"0600\"", s)
	}
	if m&0o600 != 0o600 {
		return 0, fmt.Errorf("mode %q: the owner must be able to read and write the file", s)
	}
	if m&0o002 != 0 {
		return 0, fmt.Errorf("mode %q: a token file must not be writable by everyone", s)
	}
	return os.FileMode(m), nil
}

// Templates lists the accepted template names.
const Templates = `raw, header, json or env:VAR`

// render returns the contents of a file holding token under template tmpl.
func render(tmpl, token string, expiresAt time.Time) ([]byte, error) {
	switch {
	case tmpl == "raw":
		return []byte(token), nil
	case tmpl == "header":
		return []byte("Authorization: Bearer " + token + "\n"), nil
	case tmpl == "json":
		v := struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			ExpiresAt   string `json:"expires_at,omitempty"`
		}{AccessToken: token, TokenType: "Bearer"}
		if !expiresAt.IsZero() {
			v.ExpiresAt = expiresAt.UTC().Format(time.RFC3339Nano)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return append(b, '\n'), nil
	case strings.HasPrefix(tmpl, "env:"):
		name := strings.TrimPrefix(tmpl, "env:")
		if !envVarRE.MatchString(name) {
			return nil, fmt.Errorf("template %q: %q is not a variable name (letters, digits and '_', not starting with a digit)", tmpl, name)
		}
		return []byte(name + "=" + token + "\n"), nil
	}
	return nil, fmt.Errorf("template %q: expected %s", tmpl, Templates)
}

// Resolve reads the secrets from their files when they were not given
// directly, and checks that a source is configured.
func (c *Config) Resolve() error {
	if c.Server == "" {
		return &ConfigError{File: c.File, Msg: "no broker: give server in the configuration, --server or $TOKENKEEPER_SERVER"}
	}
	if c.ClientID != "" {
		if c.ClientSecret == "" {
			if c.ClientSecretFile == "" {
				return &ConfigError{File: c.File, Msg: "client_id needs client_secret_file (or --client-secret-file)"}
			}
			s, err := readSecret(c.ClientSecretFile)
			if err != nil {
				return fmt.Errorf("client secret: %w", err)
			}
			c.ClientSecret = s
		}
		return nil
	}
	if c.APIKey == "" {
		if c.APIKeyFile == "" {
			return &ConfigError{File: c.File, Msg: "no credentials for the broker: give api_key_file (or $TOKENKEEPER_API_KEY, --api-key-file), or client_id and client_secret_file"}
		}
		s, err := readSecret(c.APIKeyFile)
		if err != nil {
			return fmt.Errorf("API key: %w", err)
		}
		c.APIKey = s
	}
	return nil
}

func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}
