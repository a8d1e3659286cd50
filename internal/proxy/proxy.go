// Package proxy forwards a caller's request to a provider's API with the
// current access token in it, so that programs with no OAuth code at all
// can call the API through the broker (/v1/proxy/{credential}/{path}).
//
// Only the API base URL's scheme and host are ever contacted: the path is
// cleaned and cannot leave the base path (CleanPath), redirects are passed
// back rather than followed, and the outbound connections refuse internal
// addresses unless allowed (internal/netguard). The caller's Authorization
// and Cookie headers, and hop-by-hop headers, are never forwarded.
// Responses stream back as they arrive; cancellation of the caller's
// request cancels the upstream one.
//
// On a 401 from the API the request is replayed once with a renewed token
// when its body was buffered (Config.MaxReplayBody); a streamed body is
// sent once. ReplayHeader says what happened. Everything here is safe for
// concurrent use.
package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/netguard"
)

// EUPSTREAM is the error code of a request the API could not be reached
// for (502 Bad Gateway).
const EUPSTREAM = "bad_gateway"

// ReplayHeader is set on a proxied answer when a 401 was involved or the
// request body could not have been replayed:
//
//	replayed        the API refused the token (401); it was renewed and the
//	                request sent once more: this is the answer to that
//	body-streamed   the body was streamed (larger than the replay buffer or
//	                of unknown length): it was sent once and is never replayed
//	not-renewed     the API answered 401 and no new token was obtained (the
//	                refresh failed, or the token it gave was refused again)
const ReplayHeader = "Tokenkeeper-Proxy-Replay"

// Replay header values.
const (
	Replayed     = "replayed"
	BodyStreamed = "body-streamed"
	NotRenewed   = "not-renewed"
)

// Defaults of Config.
const (
	DefaultMaxReplayBody = 1 << 20
	DefaultMaxBody       = 64 << 20
	DefaultTimeout       = time.Minute
)

// Config configures New.
type Config struct {
	// Transport makes the outbound calls; default: a transport whose
	// connections refuse internal addresses unless AllowPrivate.
	Transport    http.RoundTripper
	AllowPrivate bool
	// MaxReplayBody is the largest body buffered so that the request can
	// be replayed after a 401; default DefaultMaxReplayBody.
	MaxReplayBody int64
	// MaxBody is the largest request body forwarded at all (413 beyond);
	// default DefaultMaxBody.
	MaxBody int64
	// Timeout bounds the wait for the API's response headers; default
	// DefaultTimeout. The body then streams for as long as it takes.
	Timeout time.Duration
	// WriteError answers an error that happened before any response was
	// written: EINVALID, ETOOLARGE or EUPSTREAM.
	WriteError func(w http.ResponseWriter, r *http.Request, err error)
	Logger     *slog.Logger
}

// Proxy forwards requests; see the package doc.
type Proxy struct {
	cfg Config
	rp  *httputil.ReverseProxy
}

// New returns a Proxy.
func New(cfg Config) *Proxy {
	if cfg.MaxReplayBody <= 0 {
		cfg.MaxReplayBody = DefaultMaxReplayBody
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.WriteError == nil {
		cfg.WriteError = func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, tokenkeeper.ErrorMessage(err), http.StatusBadGateway)
		}
	}
	if cfg.Transport == nil {
		tr := netguard.NewHTTPClient(0, cfg.AllowPrivate).Transport.(*http.Transport)
		tr.ResponseHeaderTimeout = cfg.Timeout
		tr.Proxy = nil
		cfg.Transport = tr
	}
	p := &Proxy{cfg: cfg}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      &transport{base: cfg.Transport},
		FlushInterval:  -1, // stream: every write reaches the caller at once
		ErrorHandler:   p.errorHandler,
		ModifyResponse: rewriteLocation,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return p
}

// MaxBody is the largest request body the proxy forwards.
func (p *Proxy) MaxBody() int64 { return p.cfg.MaxBody }

// Request is one request to forward.
type Request struct {
	// Base is the API base URL; Path the cleaned, escaped path below it
	// (CleanPath), "" for the base itself.
	Base  *url.URL
	Path  string
	How   tokenkeeper.APIToken
	Token string // the current access token
	// Renew is called when the API answers 401 to Token: it reports the
	// token as rejected and returns a new one, or "" when there is none.
	Renew func(ctx context.Context, rejected string) string
	// Self is the path the caller used for Base ("/v1/proxy/NAME"): a
	// redirect to a URL under Base is rewritten to go through it again.
	Self string
}

// Result says how a forwarded request ended.
type Result struct {
	Status   int  // the status sent to the caller (0: none, the caller left)
	Replayed bool // sent twice: the first got 401
	Upstream bool // the status came from the API (not an error of the proxy)
}

type ctxKey struct{}

// state is one request's: what the transport needs, and what it did.
type state struct {
	req      *Request
	body     []byte // the buffered body; nil when streamed or empty
	streamed bool
	tooLarge *bool // set by the body reader past MaxBody
	res      Result
}

// Serve forwards r as req says and writes the answer to w.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, req *Request) Result {
	st := &state{req: req, tooLarge: new(bool)}
	if r.ContentLength > p.cfg.MaxBody {
		p.cfg.WriteError(w, r, tokenkeeper.Errorf(tokenkeeper.ETOOLARGE, "the request body (%d bytes) is larger than the proxy's limit of %d bytes", r.ContentLength, p.cfg.MaxBody))
		return Result{Status: http.StatusRequestEntityTooLarge}
	}
	switch {
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0:
	case r.ContentLength > 0 && r.ContentLength <= p.cfg.MaxReplayBody:
		buf, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength+1))
		if err != nil || int64(len(buf)) != r.ContentLength {
			p.cfg.WriteError(w, r, tokenkeeper.Errorf(tokenkeeper.EINVALID, "the request body ended before its Content-Length"))
			return Result{Status: http.StatusBadRequest}
		}
		st.body = buf
		r.Body = io.NopCloser(bytes.NewReader(buf))
	default:
		st.streamed = true
		r.Body = &limitedBody{r: r.Body, c: r.Body, left: p.cfg.MaxBody, over: st.tooLarge}
	}
	ctx := context.WithValue(r.Context(), ctxKey{}, st)
	sw := &statusWriter{ResponseWriter: w}
	p.rp.ServeHTTP(sw, r.WithContext(ctx))
	st.res.Status = sw.status
	return st.res
}

// rewrite builds the outbound request: the base URL's scheme and host,
// the cleaned path below its path, the caller's query; no caller
// credentials, no upgrade.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(ctxKey{}).(*state)
	base := st.req.Base
	u := &url.URL{Scheme: base.Scheme, Host: base.Host, RawQuery: pr.In.URL.RawQuery}
	esc := strings.TrimSuffix(base.EscapedPath(), "/")
	if st.req.Path != "" {
		esc += "/" + st.req.Path
	} else if esc == "" {
		esc = "/"
	}
	u.Path, _ = url.PathUnescape(esc) // CleanPath checked the escapes
	u.RawPath = esc
	pr.Out.URL = u
	pr.Out.Host = ""
	h := pr.Out.Header
	h.Del("Authorization")
	h.Del("Cookie")
	h.Del("Upgrade")
	h.Del("Connection")
	if st.body != nil {
		body := st.body
		pr.Out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
}

// rewriteLocation points a redirect to a URL under the base URL back at
// the proxy, so that a caller that follows it stays behind the proxy (and
// gets the token added); other redirects pass as they are, never followed.
func rewriteLocation(resp *http.Response) error {
	loc := resp.Header.Get("Location")
	st, _ := resp.Request.Context().Value(ctxKey{}).(*state)
	if loc == "" || st == nil || st.req.Self == "" {
		return nil
	}
	u, err := resp.Request.URL.Parse(loc)
	base := st.req.Base
	if err != nil || u.Scheme != base.Scheme || u.Host != base.Host {
		return nil
	}
	prefix := strings.TrimSuffix(base.EscapedPath(), "/")
	rest, ok := strings.CutPrefix(u.EscapedPath(), prefix)
	if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
		return nil
	}
	if how := st.req.How.Normalized(); how.Query != "" {
		q := u.Query()
		q.Del(how.Query) // never hand the token back in a URL
		u.RawQuery = q.Encode()
	}
	out := st.req.Self + rest
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	resp.Header.Set("Location", out)
	return nil
}

// setToken presents tok as how says, replacing what the caller sent in
// its place.
func setToken(out *http.Request, how tokenkeeper.APIToken, tok string) {
	how = how.Normalized()
	if how.Query != "" {
		q := out.URL.Query()
		q.Set(how.Query, tok)
		out.URL.RawQuery = q.Encode()
		return
	}
	if how.Scheme != "" {
		tok = how.Scheme + " " + tok
	}
	out.Header.Set(how.Header, tok)
}

// transport sends the request with the token and replays it once on 401
// when its body is buffered.
type transport struct{ base http.RoundTripper }

func (t *transport) RoundTrip(out *http.Request) (*http.Response, error) {
	st := out.Context().Value(ctxKey{}).(*state)
	if out.URL.Host != st.req.Base.Host || out.URL.Scheme != st.req.Base.Scheme {
		return nil, errors.New("refused: not the API's host") // never: rewrite sets them
	}
	first := out.Clone(out.Context())
	setToken(first, st.req.How, st.req.Token)
	resp, err := t.base.RoundTrip(first)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		if err == nil {
			st.res.Upstream = true
			if st.streamed {
				resp.Header.Set(ReplayHeader, BodyStreamed)
			}
		}
		return resp, err
	}
	st.res.Upstream = true
	if st.streamed {
		resp.Header.Set(ReplayHeader, BodyStreamed)
		return resp, nil
	}
	tok := ""
	if st.req.Renew != nil {
		tok = st.req.Renew(out.Context(), st.req.Token)
	}
	if tok == "" || tok == st.req.Token {
		resp.Header.Set(ReplayHeader, NotRenewed)
		return resp, nil
	}
	// Replay: the first answer is drained (a little, to reuse the
	// connection) and discarded.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	second := out.Clone(out.Context())
	if st.body != nil {
		second.Body = io.NopCloser(bytes.NewReader(st.body))
	}
	setToken(second, st.req.How, tok)
	resp, err = t.base.RoundTrip(second)
	if err != nil {
		return nil, err
	}
	st.res.Replayed = true
	resp.Header.Set(ReplayHeader, Replayed)
	return resp, nil
}

// errorHandler answers a request the API could not be reached for: 413
// when the streamed body passed the limit, nothing when the caller left,
// else 502 naming the cause (never the URL, which may hold the token).
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := r.Context().Value(ctxKey{}).(*state)
	st.res.Upstream = false
	switch {
	case *st.tooLarge:
		p.cfg.WriteError(w, r, tokenkeeper.Errorf(tokenkeeper.ETOOLARGE, "the request body is larger than the proxy's limit of %d bytes", p.cfg.MaxBody))
		return
	case r.Context().Err() != nil:
		// The caller went away: there is no one to answer.
		w.WriteHeader(499)
		return
	}
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err
	}
	msg := cause.Error()
	if errors.Is(err, netguard.ErrPrivateAddress) {
		msg = "the API's address is internal (start the broker with --allow-private-token-urls to allow it)"
	}
	p.cfg.Logger.Warn("proxy: the API could not be reached", "host", st.req.Base.Host, "err", msg)
	p.cfg.WriteError(w, r, tokenkeeper.Errorf(EUPSTREAM, "the API at %s could not be reached: %s", st.req.Base.Host, msg))
}

// limitedBody reads at most left bytes, then fails and sets over.
type limitedBody struct {
	r    io.Reader
	c    io.Closer
	left int64
	over *bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		*b.over = true
		return 0, fmt.Errorf("request body too large")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left+1] // one more, to tell "exactly the limit" from "over"
	}
	n, err := b.r.Read(p)
	if int64(n) > b.left {
		*b.over = true
		return 0, fmt.Errorf("request body too large")
	}
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.c.Close() }

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// CleanPath resolves the dot segments of an escaped path below the base
// path and returns it escaped, without a leading slash. A path that would
// leave the base ("..", also escaped as %2e%2e, or hidden in a segment with
// an escaped slash) is EINVALID, as is a malformed escape.
func CleanPath(escaped string) (string, error) {
	trailing := strings.HasSuffix(escaped, "/")
	var out []string
	for _, seg := range strings.Split(escaped, "/") {
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return "", tokenkeeper.Errorf(tokenkeeper.EINVALID, "malformed escape in the path")
		}
		switch dec {
		case "", ".":
			continue
		case "..":
			if len(out) == 0 {
				return "", tokenkeeper.Errorf(tokenkeeper.EINVALID, "the path leaves the API's base path")
			}
			out = out[:len(out)-1]
			continue
		}
		for _, part := range strings.FieldsFunc(dec, func(r rune) bool { return r == '/' || r == '\\' }) {
			if part == ".." || part == "." {
				return "", tokenkeeper.Errorf(tokenkeeper.EINVALID, "the path holds a dot segment behind an escaped slash")
			}
		}
		if strings.ContainsAny(dec, "\x00\r\n") {
			return "", tokenkeeper.Errorf(tokenkeeper.EINVALID, "the path holds a control character")
		}
		out = append(out, seg)
	}
	p := strings.Join(out, "/")
	if trailing && p != "" {
		p += "/"
	}
	return p, nil
}
