package tokenkeeper

import (
	"context"
	"time"
)

// CredentialSummary is a credential as a list shows it: its state and
// nothing sealed, so that a store reads it without opening a secret.
type CredentialSummary struct {
	Name         string
	Provider     string
	EndUserID    string
	EndUserName  string
	EndUserEmail string
	Status       Status
	FailureCount int
	// LastErrorCode is the OAuth error code or class of the last failure.
	LastErrorCode string
	// HasToken reports whether the credential holds an access token.
	HasToken bool
	// ExpiresAt is when the current access token expires, as the provider
	// said; zero without a token or an expiry.
	ExpiresAt     time.Time
	LastRefreshAt time.Time
	NextRefreshAt time.Time
	UpdatedAt     time.Time
}

// Overview is the state of all credentials at a glance.
type Overview struct {
	// Total is the number of credentials; ByStatus counts them by status.
	Total    int
	ByStatus map[Status]int
	// Failing are credentials in needs_reauth or error, needs_reauth first,
	// then the most recently changed.
	Failing []*CredentialSummary
	// Expiring are the credentials with an access token that are not
	// disabled, the soonest expiry first.
	Expiring []*CredentialSummary
	// Refreshes counts the refresh attempts since the Overview's since
	// time; RefreshFailures those that did not succeed.
	Refreshes, RefreshFailures int
}

// ConsoleStore answers the web console's questions about many credentials
// cheaply: no secret is opened and every query is bounded. Every method is
// safe for concurrent use.
type ConsoleStore interface {
	// CredentialSummaries returns up to limit credentials f selects whose
	// names sort after after ("" for the first page), ordered by name
	// (byte order). Returns EINVALID (a bad filter, limit not in 1..1000).
	CredentialSummaries(ctx context.Context, f CredentialFilter, after string, limit int) ([]*CredentialSummary, error)
	// CountCredentials counts the credentials f selects. Returns EINVALID.
	CountCredentials(ctx context.Context, f CredentialFilter) (int, error)
	// Overview counts credentials by status, lists up to limit failing
	// and soonest-expiring ones, and counts the refresh attempts since
	// since. Returns EINVALID (limit not in 1..100).
	Overview(ctx context.Context, since time.Time, limit int) (*Overview, error)
	// ChangeCursor returns a value that changes whenever a credential is
	// created, changed, refreshed or deleted (it may change for other
	// reasons too). It costs a few index lookups, so that one poller can
	// watch for changes on behalf of many pages.
	ChangeCursor(ctx context.Context) (string, error)
}
