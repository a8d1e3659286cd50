package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Wiring is what the harness needs from the program around it. Every field
// is required by the benchmarks that use it (noted per field).
type Wiring struct {
	// OpenStore opens the store at database, a SQLite file path or a
	// postgres:// URL, sealed with masterKey; it creates and migrates the
	// database as needed. Used by every benchmark.
	OpenStore func(ctx context.Context, database string, masterKey []byte) (tokenkeeper.Store, error)
	// StartBroker starts a broker on store in this process, listening on a
	// free loopback port. The broker owns the store from then on and
	// closes it when stopped. Used by Refresh and Read.
	StartBroker func(ctx context.Context, store tokenkeeper.Store, cfg BrokerConfig) (*Broker, error)
	// CreateAdminKey creates an admin API key named name in store and
	// returns it. Used by Read.
	CreateAdminKey func(ctx context.Context, store tokenkeeper.Store, name string) (string, error)
	// RunReads, if not nil, drives a read load from another process, as a
	// service reading tokens would, and returns what it measured; Scale
	// drives its reads with it, and from this process without it.
	RunReads func(ctx context.Context, l ReadLoad) (ReadRun, error)
	// StartBare, if not nil, starts Read's bare handler in another
	// process, answering body to every request, and returns its URL and a
	// function that stops it; Read runs it in this process without it.
	StartBare func(ctx context.Context, body []byte) (url string, stop func(), err error)
	// EventRetention is how many refresh events the store keeps per
	// credential (sqlstore.DefaultRefreshEventCount for serve);
	// Chaos uses it to tell a credential whose events were truncated.
	EventRetention int
}

// need reports the first of the named fields that w lacks, as an error.
func (w Wiring) need(fields ...string) error {
	for _, f := range fields {
		missing := false
		switch f {
		case "OpenStore":
			missing = w.OpenStore == nil
		case "StartBroker":
			missing = w.StartBroker == nil
		case "CreateAdminKey":
			missing = w.CreateAdminKey == nil
		case "EventRetention":
			missing = w.EventRetention < 1
		}
		if missing {
			return fmt.Errorf("bench: Wiring.%s is not set", f)
		}
	}
	return nil
}

// BrokerConfig is what a benchmark asks of the broker it starts.
type BrokerConfig struct {
	Concurrency     int           // refreshes in flight at most
	ProviderTimeout time.Duration // one request to a token endpoint
	DefaultLifetime time.Duration // lifetime assumed without expires_in
	ShutdownTimeout time.Duration // graceful stop
	// OnAttempt, if not nil, is called after every refresh attempt, from
	// the refresher's workers (concurrently).
	OnAttempt func(*tokenkeeper.Credential, *tokenkeeper.Event)
}

// Broker is a broker running in this process.
type Broker struct {
	// URL is its base URL: http://127.0.0.1:PORT.
	URL string
	// Stop stops it gracefully, waits until it has stopped and closed its
	// store, and returns why it failed, if it did.
	Stop func() error
}

// ConfigError is a configuration mistake: a value out of range, or two
// settings that do not fit together. Its message names the flag of the
// tokenkeeper command line that sets the value.
type ConfigError struct{ msg string }

func (e *ConfigError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error {
	return &ConfigError{fmt.Sprintf(format, args...)}
}

// Duration is a time.Duration that reads and writes JSON in Go's duration
// syntax ("1m30s"), as the reports print it.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a string such as "20s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a string such as "20s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("decode duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("decode duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Logf prints one progress line; the harness never passes it a secret.
type Logf func(format string, args ...any)
