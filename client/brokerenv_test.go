package client

import (
	"strings"
	"testing"
	"time"
)

// NewBroker takes named fields; BrokerFromEnv reads the CLI's variables.
func TestNewBrokerAndBrokerFromEnv(t *testing.T) {
	b := newFakeBroker(time.Now, time.Hour)
	srv := serve(t, b)

	s, err := NewBroker(BrokerConfig{URL: srv.URL, APIKey: testAPIKey, Credential: "github"})
	if err != nil {
		t.Fatal(err)
	}
	closeSource(t, s)
	want := mustToken(t, s).AccessToken

	t.Setenv(EnvServer, srv.URL)
	t.Setenv(EnvAPIKey, testAPIKey)
	s, err = BrokerFromEnv("github")
	if err != nil {
		t.Fatal(err)
	}
	closeSource(t, s)
	if got := mustToken(t, s).AccessToken; got != want {
		t.Fatalf("BrokerFromEnv served %q, NewBroker %q", got, want)
	}

	t.Setenv(EnvAPIKey, "")
	if _, err := BrokerFromEnv("github"); err == nil || !strings.Contains(err.Error(), "TOKENKEEPER_API_KEY") {
		t.Fatalf("without the key: %v", err)
	}
	// Without $TOKENKEEPER_SERVER: the CLI's default broker.
	t.Setenv(EnvServer, "")
	t.Setenv(EnvAPIKey, testAPIKey)
	s, err = BrokerFromEnv("github")
	if err != nil {
		t.Fatal(err)
	}
	s.Close() // not used: something else may listen on the default port
}
