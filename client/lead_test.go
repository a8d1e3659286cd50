package client_test

import (
	"testing"

	"github.com/tokenkeeper/tokenkeeper/client"
	"github.com/tokenkeeper/tokenkeeper/internal/refresh"
)

// One default lead: the library refreshes at the same point of a token's
// life as the broker.
func TestDefaultLeadMatchesBroker(t *testing.T) {
	if client.DefaultLeadFraction != refresh.DefaultLeadFraction || client.DefaultLead != refresh.DefaultMaxLead {
		t.Fatalf("library lead %v of the lifetime, at most %v; broker %v, at most %v",
			client.DefaultLeadFraction, client.DefaultLead, refresh.DefaultLeadFraction, refresh.DefaultMaxLead)
	}
}
