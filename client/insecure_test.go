package client

import (
	"strings"
	"testing"
)

// L8: the library refuses a plain-http token URL off loopback, as the
// broker does, unless told it is a test setup.
func TestLibraryRefusesPlainHTTPOffLoopback(t *testing.T) {
	cfg := Config{TokenURL: "http://idp.example.com/token", ClientID: "c", ClientSecret: "s", AuthStyle: AuthStyleHeader}
	if _, err := ClientCredentials(cfg); err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Fatalf("ClientCredentials with http off loopback: err = %v", err)
	}
	if _, err := RefreshToken(cfg, "rt"); err == nil {
		t.Fatal("RefreshToken with http off loopback: no error")
	}
	for _, u := range []string{"http://127.0.0.1:9/token", "http://localhost:9/token", "http://[::1]:9/token", "https://idp.example.com/token"} {
		cfg.TokenURL = u
		src, err := ClientCredentials(cfg)
		if err != nil {
			t.Fatalf("%s refused: %v", u, err)
		}
		closeSource(t, src)
	}
	cfg.TokenURL, cfg.InsecureHTTP = "http://idp.example.com/token", true
	src, err := ClientCredentials(cfg)
	if err != nil {
		t.Fatalf("InsecureHTTP: %v", err)
	}
	closeSource(t, src)
}

// Info: Broker refuses a plain-http broker off loopback unless told.
func TestBrokerRefusesPlainHTTPOffLoopback(t *testing.T) {
	if _, err := Broker("http://broker.example.com:8080", "tk_x", "svc"); err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Fatalf("Broker over http off loopback: %v", err)
	}
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:8080", "https://broker.example.com"} {
		src, err := Broker(u, "tk_x", "svc")
		if err != nil {
			t.Fatalf("%s refused: %v", u, err)
		}
		closeSource(t, src)
	}
	src, err := Broker("http://broker.example.com:8080", "tk_x", "svc", WithInsecureBroker())
	if err != nil {
		t.Fatalf("WithInsecureBroker: %v", err)
	}
	closeSource(t, src)
}
