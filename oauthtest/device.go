package oauthtest

import (
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The device authorization grant (RFC 8628).
const (
	deviceCodeGrantType     = "urn:ietf:params:oauth:grant-type:device_code"
	deviceAuthorizationPath = "/device_authorization"
	devicePath              = "/device"
	devicePrefix            = "odc_"
	// userCodeAlphabet has no vowels (no words) and no easily confused
	// characters (RFC 8628 §6.1); a user code has userCodeLen of them,
	// about 34.5 bits.
	userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"
	userCodeLen      = 8
	// slowDownStep is what slow_down adds to the interval (RFC 8628 §3.5).
	slowDownStep = 5 * time.Second
)

type deviceStatus int

const (
	devicePending deviceStatus = iota
	deviceApproved
	deviceDenied
	deviceRedeemed
)

// deviceRecord is the state of one device code, guarded by Server.mu.
type deviceRecord struct {
	client    *client
	epoch     uint64
	scope     string
	iss       string
	userCode  string // normalized: userCodeLen letters of userCodeAlphabet
	expiresAt time.Time
	interval  time.Duration // grows with each slow_down
	lastPoll  time.Time     // zero: never polled
	status    deviceStatus
	approval  approval // set when approved
	family    *family  // the family its redemption started
}

// newUserCode returns userCodeLen random letters of userCodeAlphabet.
func newUserCode() string {
	b := make([]byte, 0, userCodeLen)
	var buf [16]byte
	for len(b) < userCodeLen {
		_, _ = rand.Read(buf[:])
		for _, x := range buf {
			// 240 is the largest multiple of 20 below 256: no modulo bias.
			if x < 240 && len(b) < userCodeLen {
				b = append(b, userCodeAlphabet[x%20])
			}
		}
	}
	return string(b)
}

// formatUserCode shows a normalized user code as XXXX-XXXX.
func formatUserCode(c string) string {
	if len(c) != userCodeLen {
		return c
	}
	return c[:4] + "-" + c[4:]
}

// normalizeUserCode returns the user code the end user typed, in upper case
// without dashes and spaces, and whether it has the form of one.
func normalizeUserCode(s string) (string, bool) {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r == '-' || r == ' ':
		case strings.ContainsRune(userCodeAlphabet, r):
			b.WriteRune(r)
		default:
			return "", false
		}
	}
	return b.String(), b.Len() == userCodeLen
}

// deviceAuthorizationResponse is the answer of the device authorization
// endpoint (RFC 8628 §3.2). Interval is in whole seconds.
type deviceAuthorizationResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// handleDeviceAuthorization serves POST /device_authorization (RFC 8628
// §3.1): the client authenticates as at the token endpoint (a public
// client with client_id alone) and gets a device code and a user code.
func (s *Server) handleDeviceAuthorization() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		form, perr := readForm(w, r)
		if perr != nil {
			s.logDevice(r, "", "rejected", perr.code)
			writeOAuthError(w, perr)
			return
		}
		c, aerr := s.authenticate(r, form)
		if aerr != nil {
			s.logDevice(r, s.registeredID(form, r), "rejected", aerr.code)
			writeOAuthError(w, aerr)
			return
		}
		iss := s.issuerFor(r)
		deviceCode := newToken(devicePrefix)
		h := hashOf(deviceCode)
		lifetime, interval := s.cfg.flows.lifetime(), s.cfg.flows.interval()

		s.mu.Lock()
		now := s.cfg.now()
		s.pruneDevicesLocked(now)
		userCode := newUserCode()
		for s.flows.userCodes[userCode] != nil {
			userCode = newUserCode()
		}
		d := &deviceRecord{
			client:    c,
			epoch:     c.epoch,
			scope:     normalizeScope(form.Get("scope")),
			iss:       iss,
			userCode:  userCode,
			expiresAt: now.Add(lifetime),
			interval:  interval,
		}
		s.flows.devices[h] = d
		s.flows.userCodes[userCode] = d
		// Kept a lifetime past expiry, so that a late poll gets
		// expired_token rather than invalid_grant.
		s.flows.deviceQueue.push(h, d.expiresAt.Add(lifetime))
		s.stats.DeviceCodesIssued++
		s.mu.Unlock()

		shown := formatUserCode(userCode)
		s.logDevice(r, c.id, "issued", "")
		setNoStore(w.Header())
		writeJSON(w, http.StatusOK, deviceAuthorizationResponse{
			DeviceCode:              deviceCode,
			UserCode:                shown,
			VerificationURI:         iss + devicePath,
			VerificationURIComplete: iss + devicePath + "?" + url.Values{"user_code": {shown}}.Encode(),
			ExpiresIn:               expiresIn(lifetime),
			Interval:                expiresIn(interval),
		})
	}
}

// pruneDevicesLocked forgets device codes kept long enough. s.mu must be
// held.
func (s *Server) pruneDevicesLocked(now time.Time) {
	s.flows.deviceQueue.popDue(now, func(k digest) {
		if d := s.flows.devices[k]; d != nil && s.flows.userCodes[d.userCode] == d {
			delete(s.flows.userCodes, d.userCode)
		}
		delete(s.flows.devices, k)
	})
}

// logDevice logs a device authorization request, never a code.
func (s *Server) logDevice(r *http.Request, clientID, outcome, code string) {
	attrs := []slog.Attr{slog.String("client_id", clientID), slog.String("outcome", outcome)}
	if code != "" {
		attrs = append(attrs, slog.String("error", code))
	}
	s.cfg.logger.LogAttrs(r.Context(), slog.LevelInfo, "oauthtest: device authorization request", attrs...)
}

// liveDeviceLocked returns the pending, unexpired device record of a
// normalized user code, or nil. s.mu must be held.
func (s *Server) liveDeviceLocked(userCode string, now time.Time) *deviceRecord {
	d := s.flows.userCodes[userCode]
	if d == nil || d.status != devicePending || !now.Before(d.expiresAt) || d.epoch != d.client.epoch {
		return nil
	}
	return d
}

// handleDevicePage serves GET /device, the verification page: without
// user_code a form asking for it; with a valid one the consent page or,
// without WithConsent, an immediate approval.
func (s *Server) handleDevicePage() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, given := r.URL.Query()["user_code"]
		if !given {
			s.renderPage(w, r, http.StatusOK, "device", devicePage{Issuer: s.issuerFor(r)})
			return
		}
		typed := ""
		if len(raw) > 0 {
			typed = raw[0]
		}
		code, ok := normalizeUserCode(typed)
		var d *deviceRecord
		if ok {
			s.mu.Lock()
			d = s.liveDeviceLocked(code, s.cfg.now())
			s.mu.Unlock()
		}
		if d == nil {
			s.logDevice(r, "", "rejected", "unknown_user_code")
			s.renderPage(w, r, http.StatusBadRequest, "device", devicePage{
				UserCode: printable(typed, 20),
				Error:    "That code is unknown, expired or already used. Check the code on your device.",
				Issuer:   s.issuerFor(r),
			})
			return
		}
		req := &consentRequest{client: d.client, scope: d.scope, device: d}
		if s.cfg.flows.consent {
			s.showConsent(w, r, req)
			return
		}
		s.decideDevice(w, r, req, true, s.cfg.flows.endUser())
	}
}

// decideDevice records the end user's decision on a device code and
// renders the outcome.
func (s *Server) decideDevice(w http.ResponseWriter, r *http.Request, req *consentRequest, approve bool, user EndUser) {
	err := s.setDeviceDecision(req.device, approve, user)
	switch {
	case err != nil:
		s.logConsent(r, req.client.id, "rejected", "device_not_pending")
		s.renderMessage(w, r, http.StatusBadRequest, "error", "This code is no longer valid",
			"It has expired or was already answered. Start again on your device.")
	case approve:
		s.logConsent(r, req.client.id, "approved", "")
		s.renderMessage(w, r, http.StatusOK, "approved", "Device connected",
			req.client.id+" may now access your account. You can close this window and return to your device.")
	default:
		s.logConsent(r, req.client.id, "denied", "")
		s.renderMessage(w, r, http.StatusOK, "denied", "Request denied",
			req.client.id+" was not given access. You can close this window.")
	}
}

var errDeviceNotPending = errors.New("oauthtest: the user code is unknown, expired or already answered")

// setDeviceDecision approves or denies a pending device code.
func (s *Server) setDeviceDecision(d *deviceRecord, approve bool, user EndUser) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.now()
	if s.liveDeviceLocked(d.userCode, now) != d {
		return errDeviceNotPending
	}
	if !approve {
		d.status = deviceDenied
		return nil
	}
	d.status = deviceApproved
	d.approval = approval{scope: d.scope, iss: d.iss, user: user, authTime: now}
	return nil
}

// ApproveDevice approves the device code with the given user code (in any
// case, with or without its dash) on behalf of the default end user (see
// WithEndUser), as the verification page does. It fails if the user code
// is unknown, expired or already answered. It lets tests complete a device
// flow without a browser.
func (s *Server) ApproveDevice(userCode string) error {
	return s.decideDeviceCode(userCode, true)
}

// DenyDevice denies the device code with the given user code, as the Deny
// button of the verification page does; the next poll gets access_denied.
// It fails like ApproveDevice.
func (s *Server) DenyDevice(userCode string) error {
	return s.decideDeviceCode(userCode, false)
}

func (s *Server) decideDeviceCode(userCode string, approve bool) error {
	code, ok := normalizeUserCode(userCode)
	if !ok {
		return errDeviceNotPending
	}
	s.mu.Lock()
	d := s.flows.userCodes[code]
	s.mu.Unlock()
	if d == nil {
		return errDeviceNotPending
	}
	return s.setDeviceDecision(d, approve, s.cfg.flows.endUser())
}

// deviceCodeGrant runs the device_code grant (RFC 8628 §3.4, §3.5).
func (s *Server) deviceCodeGrant(c *client, form url.Values) grantResult {
	dc := form.Get("device_code")
	if dc == "" {
		return grantResult{err: errInvalidRequest("device_code is missing")}
	}
	h := hashOf(dc)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.now()
	d := s.flows.devices[h]
	var res grantResult
	switch {
	case d == nil:
		res.err = errInvalidGrant("the device code is unknown")
	case d.client != c:
		res.err = errInvalidGrant("the device code was issued to another client")
	case d.status == deviceRedeemed:
		res.err = errInvalidGrant("the device code was already used")
	case !now.Before(d.expiresAt):
		res.err = deviceError("expired_token", "the device code has expired")
	case d.epoch != c.epoch:
		res.err = errInvalidGrant("the device code was revoked")
	case d.status == deviceDenied:
		res.err = deviceError("access_denied", "the end user denied the request")
	case d.status == devicePending:
		if d.interval > 0 && !d.lastPoll.IsZero() && now.Sub(d.lastPoll) < d.interval {
			d.interval += slowDownStep
			d.lastPoll = now
			s.stats.SlowDowns++
			res.err = deviceError("slow_down", "polling too fast; wait the interval, now 5 seconds longer")
		} else {
			d.lastPoll = now
			res.err = deviceError("authorization_pending", "the end user has not answered yet")
		}
	}
	if res.err != nil {
		return res
	}
	d.status = deviceRedeemed
	f, resp := s.startGrantLocked(c, d.approval, now)
	d.family = f
	res.family, res.event = f.id, "family_started"
	res.resp = resp
	return res
}

// deviceError is an error of the device_code grant (RFC 8628 §3.5).
func deviceError(code, desc string) *oauthError {
	return &oauthError{code, desc, http.StatusBadRequest}
}
