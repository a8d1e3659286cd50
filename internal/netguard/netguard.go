// Package netguard keeps the broker's outbound calls to providers away
// from internal networks: loopback, private (RFC 1918, unique local),
// link-local (where cloud metadata services live, 169.254.169.254 and
// fd00:ec2::254), shared (100.64.0.0/10), unspecified and multicast
// addresses. The check runs when a connection is dialled, on the address
// actually connected to, so a host name that resolves to a public address
// when validated and to an internal one later (DNS rebinding) is refused
// as well. CheckURL adds the early check of literal addresses for input
// validation. Everything here is safe for concurrent use.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrPrivateAddress is returned (wrapped) for a refused address.
var ErrPrivateAddress = errors.New("internal network address refused (start the broker with --allow-private-token-urls to allow it)")

var shared = netip.MustParsePrefix("100.64.0.0/10")

// Internal reports whether a is an address outbound calls must not reach.
func Internal(a netip.Addr) bool {
	a = a.Unmap()
	return !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || shared.Contains(a)
}

// Control is a net.Dialer Control function that refuses a connection to
// an internal address. It runs after the name is resolved and before the
// connection is attempted: nothing is sent to a refused address.
func Control(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, ErrPrivateAddress)
	}
	a, err := netip.ParseAddr(host)
	if err != nil || Internal(a) {
		return fmt.Errorf("dial %s: %w", address, ErrPrivateAddress)
	}
	return nil
}

// IdleConnsPerHost is how many idle connections to one host the clients of
// NewHTTPClient keep for reuse. Go's default is 2: a broker refreshing
// the credentials of one provider 64 at a time (one token endpoint, one
// host) closed 62 connections after each round and opened them again, a
// TCP and TLS handshake per refresh.
const IdleConnsPerHost = 64

// NewHTTPClient returns a client for calls to providers with the given
// timeout, keeping IdleConnsPerHost idle connections per host (raise it on
// the returned Transport for more concurrent calls). Unless allowPrivate,
// its connections refuse internal addresses (see Control), and it uses no
// proxy from the environment, since a proxy would connect on its behalf
// where the check cannot see.
func NewHTTPClient(timeout time.Duration, allowPrivate bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = IdleConnsPerHost
	tr.MaxIdleConns = 0 // no bound but per host
	if !allowPrivate {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: Control}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}
		tr.Proxy = nil
	}
	return &http.Client{Timeout: timeout, Transport: tr}
}

// CheckURL refuses a URL whose host is "localhost" (or a name under it)
// or a literal internal address; other names are checked when dialled.
// The error never quotes the URL.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return ErrPrivateAddress
	}
	if a, err := netip.ParseAddr(host); err == nil && Internal(a) {
		return ErrPrivateAddress
	}
	return nil
}
