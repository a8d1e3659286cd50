package connect

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/oauth"
)

// slowDownStep is what slow_down adds to the polling interval (RFC 8628
// §3.5).
const slowDownStep = 5 * time.Second

// maxPollWait caps the wait between polls after network errors.
const maxPollWait = time.Minute

// pollLeaseSlack is added to a device poll lease beyond three intervals:
// the longest a token request and the commit of its grant may take.
const pollLeaseSlack = 30 * time.Second

// resumeInterval is how often Run looks for pending device sessions that
// no poller of this process follows (one whose replica stopped).
const resumeInterval = 30 * time.Second

// StartDevice asks the provider for a device code (RFC 8628 §3.1), creates
// a device session and starts polling the token endpoint for it. Returns
// EINVALID (a bad request, a provider without a device authorization
// endpoint, the provider refusing), ENOTFOUND or ECONFLICT.
func (s *Service) StartDevice(ctx context.Context, req StartRequest) (*DeviceStarted, error) {
	if req.ReturnTo != "" {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "return_to has no use in the device flow")
	}
	p, name, reconnect, scopes, err := s.prepare(ctx, req)
	if err != nil {
		return nil, err
	}
	if p.DeviceAuthorizationURL == "" {
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "provider %q has no device_authorization_url", p.Name)
	}
	d, err := s.oauthConfig(p, scopes).DeviceAuthorization(ctx, p.DeviceAuthorizationURL)
	if err != nil {
		reason, _ := exchangeFailure(err)
		s.log.Info("connect: device authorization refused", "provider", p.Name, "reason", reason)
		return nil, tokenkeeper.Errorf(tokenkeeper.EINVALID, "the provider refused the device authorization request (%s)", reason)
	}
	cs := &tokenkeeper.ConnectSession{
		Kind: tokenkeeper.ConnectDevice, Provider: p.Name, CredentialName: name, Reconnect: reconnect,
		EndUserID: req.EndUserID, Scopes: scopes, DeviceCode: d.DeviceCode, UserCode: d.UserCode,
		VerificationURI: d.VerificationURI, VerificationURIComplete: d.VerificationURIComplete,
		Interval: d.Interval, CreatedBy: req.Actor, ExpiresAt: d.Expiry,
	}
	if err := s.cfg.Store.CreateConnectSession(ctx, cs); err != nil {
		return nil, err
	}
	s.log.Info("device session created", "session", cs.ID, "provider", p.Name, "credential", name, "reconnect", reconnect, "actor", req.Actor)
	s.startPoller(cs)
	return &DeviceStarted{Session: cs, UserCode: d.UserCode, VerificationURI: d.VerificationURI,
		VerificationURIComplete: d.VerificationURIComplete}, nil
}

// startPoller polls for cs in the background, once per session.
func (s *Service) startPoller(cs *tokenkeeper.ConnectSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.polling[cs.ID] {
		return
	}
	s.polling[cs.ID] = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.polling, cs.ID)
			s.mu.Unlock()
		}()
		s.poll(s.ctx, cs)
	}()
}

// poll asks the token endpoint for cs's grant until the user answers, the
// device code expires or ctx ends (a restart resumes it).
func (s *Service) poll(ctx context.Context, cs *tokenkeeper.ConnectSession) {
	interval := max(cs.Interval, time.Second)
	wait := interval
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if !s.now().Before(cs.ExpiresAt) {
			s.fail(ctx, cs, http.StatusGone, "expired_token", "The device code expired before the user answered.")
			return
		}
		// Another replica may have ended the session, or be polling it:
		// one poller at a time holds the lease.
		cur, err := s.cfg.Store.ConnectSession(ctx, cs.ID)
		if err == nil && cur.Status != tokenkeeper.ConnectPending {
			return
		}
		held, err := s.cfg.Store.LeaseDevicePoll(ctx, cs.ID, s.owner, s.now().Add(3*interval+pollLeaseSlack), s.now())
		if err != nil || !held {
			timer.Reset(interval)
			continue
		}
		p, err := s.cfg.Store.Provider(ctx, cs.Provider)
		if err != nil {
			if tokenkeeper.ErrorCode(err) == tokenkeeper.ENOTFOUND {
				s.fail(ctx, cs, http.StatusGone, "provider_deleted", "The provider was deleted.")
				return
			}
			timer.Reset(wait)
			continue
		}
		tok, err := s.oauthConfig(p, nil).DeviceToken(ctx, cs.DeviceCode)
		if err == nil {
			s.finish(ctx, cs, p, tok, nil)
			return
		}
		var oe *oauth.Error
		errors.As(err, &oe)
		code := ""
		if oe != nil {
			code = oe.Code
		}
		switch {
		case code == "authorization_pending":
			wait = interval
		case code == "slow_down":
			interval += slowDownStep
			wait = interval
		case code == "expired_token":
			s.fail(ctx, cs, http.StatusGone, "expired_token", "The device code expired before the user answered.")
			return
		case code == "access_denied":
			s.fail(ctx, cs, http.StatusForbidden, "access_denied", "The user denied access at the provider; nothing was stored.")
			return
		case oauth.IsPermanent(err) || code != "":
			reason, msg := exchangeFailure(err)
			s.fail(ctx, cs, http.StatusBadGateway, reason, msg)
			return
		default:
			// Network trouble or 5xx: keep trying, slower, until expiry.
			wait = min(max(wait*2, interval), maxPollWait)
			s.log.Debug("device poll failed, retrying", "session", cs.ID, "err", err)
		}
		timer.Reset(wait)
	}
}
