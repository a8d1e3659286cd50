package client

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"golang.org/x/oauth2"
)

// Defaults. See the package documentation for how lead and leeway scale with
// a token's lifetime.
const (
	// DefaultLead is the longest time before expiry at which a token is
	// refreshed in the background, unless WithLead or WithLeadFraction says
	// otherwise.
	DefaultLead = 5 * time.Minute
	// DefaultLeadFraction is the share of a token's lifetime before its
	// expiry at which it is refreshed, unless WithLead or WithLeadFraction
	// says otherwise. The broker uses the same default (a third, at most
	// DefaultLead), so a token is replaced at the same point of its life
	// whichever refreshes it.
	DefaultLeadFraction = 1.0 / 3
	// DefaultLeeway is the longest remaining life at which a token stops
	// being handed out; a caller then waits for a new one. It is never more
	// than 1/20 of the token's lifetime.
	DefaultLeeway = 10 * time.Second
	// DefaultLifetime is the lifetime assumed for a token whose response has
	// no expires_in (or, for Wrap, whose Expiry is zero).
	DefaultLifetime = time.Hour
	// DefaultBackoffMin and DefaultBackoffMax bound the delay between
	// background attempts after temporary failures.
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = time.Minute
	// DefaultHTTPTimeout is the timeout of the HTTP client used when none is
	// given.
	DefaultHTTPTimeout = 30 * time.Second

	// maxLeadFraction caps the lead so that a token is always used for at
	// least a tenth of its life before it is replaced.
	maxLeadFraction = 0.9
	// leewayDivisor caps the leeway at lifetime/leewayDivisor.
	leewayDivisor = 20
	// maxRetryAfter caps how long a Retry-After answer can silence the source.
	maxRetryAfter = time.Hour
)

// Option configures a TokenSource. An invalid option makes the constructor
// return an error that names it.
type Option func(*settings) error

// settings is the configuration of a TokenSource, fixed at construction.
type settings struct {
	store          TokenStore
	storeSet       bool          // WithStore was given
	lead           time.Duration // duration bound of the lead; < 0: not in force
	leadFraction   float64       // fraction bound of the lead; 0: not in force
	leadSet        bool          // WithLead was given
	fractionSet    bool          // WithLeadFraction was given
	leeway         time.Duration
	lifetime       time.Duration // default lifetime
	logger         *slog.Logger
	onSaveError    func(error)
	onToken        func(*oauth2.Token)
	backoffMin     time.Duration
	backoffMax     time.Duration
	clock          Clock
	httpClient     *http.Client
	httpClientSet  bool
	randomFraction func() float64 // in [0,1), for jitter; replaced in tests
	insecureBroker bool           // WithInsecureBroker: plain http off loopback allowed
}

func defaultSettings() settings {
	return settings{
		lead:         DefaultLead,
		leadFraction: DefaultLeadFraction,
		leeway:       DefaultLeeway,
		lifetime:     DefaultLifetime,
		logger:       slog.New(slog.DiscardHandler),
		backoffMin:   DefaultBackoffMin,
		backoffMax:   DefaultBackoffMax,
		clock:        systemClock{},
		// Jitter need not be unpredictable, only spread.
		randomFraction: rand.Float64,
	}
}

// apply applies opts in order and settles the lead bounds.
func (s *settings) apply(opts []Option) error {
	for _, o := range opts {
		if o == nil {
			return errors.New("client: nil Option")
		}
		if err := o(s); err != nil {
			return fmt.Errorf("client: %w", err)
		}
	}
	// Giving only one of WithLead and WithLeadFraction switches the other
	// bound off.
	switch {
	case s.leadSet && !s.fractionSet:
		s.leadFraction = 0
	case s.fractionSet && !s.leadSet:
		s.lead = -1
	}
	if s.store == nil {
		s.store = NewMemoryStore()
	}
	return nil
}

// WithStore sets where tokens are persisted. The default is a new
// MemoryStore. A nil store is an error.
func WithStore(st TokenStore) Option {
	return func(s *settings) error {
		if st == nil {
			return errors.New("WithStore: store must not be nil")
		}
		s.store, s.storeSet = st, true
		return nil
	}
}

// WithLead sets the duration before expiry at which a token is refreshed in
// the background. Zero disables refresh ahead; negative is an error. Given
// alone, it replaces the default fraction bound; given with
// WithLeadFraction, the smaller of the two applies.
func WithLead(d time.Duration) Option {
	return func(s *settings) error {
		if d < 0 {
			return fmt.Errorf("WithLead: lead must not be negative, got %v", d)
		}
		s.lead, s.leadSet = d, true
		return nil
	}
}

// WithLeadFraction sets the share of a token's lifetime before its expiry at
// which it is refreshed in the background; f must be in (0, 1). Given alone,
// it replaces the default duration bound; given with WithLead, the smaller
// of the two applies.
func WithLeadFraction(f float64) Option {
	return func(s *settings) error {
		if !(f > 0 && f < 1) {
			return fmt.Errorf("WithLeadFraction: fraction must be in (0, 1), got %v", f)
		}
		s.leadFraction, s.fractionSet = f, true
		return nil
	}
}

// WithLeeway sets the remaining life below which a token is no longer handed
// out (default DefaultLeeway). Whatever is set, the leeway never exceeds
// 1/20 of a token's lifetime. Negative is an error.
func WithLeeway(d time.Duration) Option {
	return func(s *settings) error {
		if d < 0 {
			return fmt.Errorf("WithLeeway: leeway must not be negative, got %v", d)
		}
		s.leeway = d
		return nil
	}
}

// WithDefaultLifetime sets the lifetime assumed when a token response has no
// expires_in (default DefaultLifetime). It must be positive.
func WithDefaultLifetime(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("WithDefaultLifetime: lifetime must be positive, got %v", d)
		}
		s.lifetime = d
		return nil
	}
}

// WithLogger sets the logger; the default discards. The source logs refresh
// outcomes, failures and save errors, never a token or secret.
func WithLogger(l *slog.Logger) Option {
	return func(s *settings) error {
		if l == nil {
			return errors.New("WithLogger: logger must not be nil")
		}
		s.logger = l
		return nil
	}
}

// WithOnSaveError sets a function called each time saving a token to the
// store fails. The token is used anyway and the save is retried. Calls are
// never concurrent with each other or with the WithOnToken function.
func WithOnSaveError(f func(error)) Option {
	return func(s *settings) error {
		s.onSaveError = f
		return nil
	}
}

// WithOnToken sets a function called with each new token after it has been
// offered to the store, for instance to persist it elsewhere. It receives a
// copy. Calls are never concurrent with each other or with the
// WithOnSaveError function, and come in the order the tokens were obtained;
// a token already superseded when its turn comes is skipped, so the last
// call is always with the newest token. It must not block for long, and
// must not log the token.
func WithOnToken(f func(*oauth2.Token)) Option {
	return func(s *settings) error {
		s.onToken = f
		return nil
	}
}

// WithBackoff bounds the delay between background attempts after temporary
// failures: the n-th consecutive failure waits about min·2ⁿ⁻¹ (with jitter),
// at most max, and never less than a Retry-After the server sent (up to one
// hour). Defaults: DefaultBackoffMin and DefaultBackoffMax.
func WithBackoff(min, max time.Duration) Option {
	return func(s *settings) error {
		if min <= 0 || max < min {
			return fmt.Errorf("WithBackoff: need 0 < min <= max, got min %v max %v", min, max)
		}
		s.backoffMin, s.backoffMax = min, max
		return nil
	}
}

// WithClock sets the clock, for tests. The default is the system clock.
func WithClock(c Clock) Option {
	return func(s *settings) error {
		if c == nil {
			return errors.New("WithClock: clock must not be nil")
		}
		s.clock = c
		return nil
	}
}

// WithHTTPClient sets the HTTP client used to reach the token endpoint or
// the broker. It overrides Config.HTTPClient. Wrap ignores it. The client
// must not itself use a Transport fed by this source.
func WithHTTPClient(c *http.Client) Option {
	return func(s *settings) error {
		if c == nil {
			return errors.New("WithHTTPClient: client must not be nil")
		}
		s.httpClient, s.httpClientSet = c, true
		return nil
	}
}

// leadFor returns how long before expiry a token with the given lifetime is
// refreshed in the background.
func (s *settings) leadFor(lifetime time.Duration) time.Duration {
	if lifetime <= 0 {
		return 0
	}
	lead := time.Duration(maxLeadFraction * float64(lifetime))
	if s.leadFraction > 0 {
		// Rounded to the millisecond: a third of a minute is 20 s, not a
		// nanosecond less.
		lead = min(lead, time.Duration(s.leadFraction*float64(lifetime)).Round(time.Millisecond))
	}
	if s.lead >= 0 {
		lead = min(lead, s.lead)
	}
	return lead
}

// leewayFor returns the remaining life below which a token with the given
// lifetime is no longer handed out.
func (s *settings) leewayFor(lifetime time.Duration) time.Duration {
	if lifetime <= 0 {
		return 0
	}
	return min(s.leeway, lifetime/leewayDivisor)
}

// backoff returns the delay before the next attempt after the n-th
// consecutive temporary failure (n >= 1), given the Retry-After the server
// sent (0 if none).
func (s *settings) backoff(n int, retryAfter time.Duration) time.Duration {
	d := s.backoffMin
	for i := 1; i < n && d < s.backoffMax; i++ {
		d *= 2
	}
	d = min(d, s.backoffMax)
	// Jitter: a uniformly random delay in [d/2, d).
	r := s.randomFraction()
	d = d/2 + time.Duration(r*float64(d/2))
	if retryAfter > d {
		d = min(retryAfter, maxRetryAfter)
	}
	return d
}
