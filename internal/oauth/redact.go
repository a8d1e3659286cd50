package oauth

import (
	"html"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// redactedMark replaces a redacted value.
	redactedMark = "[redacted]"
	// excerptLimit is the most runes of a body excerpt.
	excerptLimit = 200
	// descriptionLimit is the most runes of an error description or URI.
	descriptionLimit = 300
	// sanitizeInputLimit is how much of a body is looked at for an excerpt.
	sanitizeInputLimit = 32 << 10
	// redactWindowFactor times the rune limit is how many bytes of the
	// cleaned text are redacted (a rune takes up to 4 bytes); the rest
	// cannot reach the result.
	redactWindowFactor = 6
	// minTokenRun is the shortest run of token characters that is redacted
	// as a likely token even without a key naming it.
	minTokenRun = 20
)

var (
	// secretKeyRE matches member and parameter names whose values are
	// secrets: access_token, refresh_token, id_token, client_secret, ...
	secretKeyRE = regexp.MustCompile(`(?i)(token|secret|password|passwd|assertion|verifier|api[_-]?key|credential)`)

	// codeParamRE matches an authorization code in a query string.
	codeParamRE = regexp.MustCompile(`(?i)(\bcode=)([^\s"'&<>]+)`)
	// authSchemeRE matches HTTP credentials: "Bearer <token>", "Basic <b64>".
	authSchemeRE = regexp.MustCompile(`(?i)(\b(?:bearer|basic|dpop|mac)\s+)([A-Za-z0-9._~+/-]+=*)`)
	// tokenRunRE matches runs of characters tokens are made of; tokenLike
	// judges their length.
	tokenRunRE = regexp.MustCompile(`[A-Za-z0-9._~+/=-]+`)

	// scriptStyleRE, commentRE and tagRE strip HTML markup.
	scriptStyleRE = regexp.MustCompile(`(?is)<(?:script|style)\b.*?</(?:script|style)\s*>`)
	commentRE     = regexp.MustCompile(`(?s)<!--.*?-->`)
	tagRE         = regexp.MustCompile(`<[!/?]?[A-Za-z][^>]*>?`)
)

// sanitizeText turns untrusted text from a provider into something safe to
// put in an error: at most sanitizeInputLimit bytes looked at, valid UTF-8,
// HTML markup stripped (when markup is true), whitespace and control
// characters collapsed to single spaces, the given secrets and every
// token-like value redacted, and at most limit runes kept.
func sanitizeText(s string, limit int, markup bool, secrets []string) string {
	if len(s) > sanitizeInputLimit {
		s = s[:sanitizeInputLimit]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if markup && strings.Contains(s, "<") {
		s = scriptStyleRE.ReplaceAllString(s, " ")
		s = commentRE.ReplaceAllString(s, " ")
		s = tagRE.ReplaceAllString(s, " ")
	}
	if markup && strings.Contains(s, "&") {
		s = html.UnescapeString(s)
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	s = cutAtSpace(s, limit*redactWindowFactor)
	s = redact(s, secrets)
	return truncateRunes(s, limit)
}

// cutAtSpace shortens s to at most n bytes, cutting at a space so that no
// word (and so no token) is split: the words kept are redacted exactly as
// they would be in the whole text.
func cutAtSpace(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if i := strings.LastIndexByte(s[:n+1], ' '); i > 0 {
		return s[:i]
	}
	// One giant word: its prefix might be part of a token that only the
	// whole word would have been recognized as.
	return redactedMark
}

// redact replaces the given secrets and every token-like value in s.
func redact(s string, secrets []string) string {
	if len(secrets) > 0 {
		// Longest first, so that a secret containing another is replaced whole.
		sorted := slices.Clone(secrets)
		slices.SortFunc(sorted, func(a, b string) int { return len(b) - len(a) })
		for _, sec := range sorted {
			if sec != "" {
				s = strings.ReplaceAll(s, sec, redactedMark)
			}
			// Whitespace in the text was collapsed: match the secret so too.
			if c := strings.Join(strings.Fields(sec), " "); c != sec && c != "" {
				s = strings.ReplaceAll(s, c, redactedMark)
			}
		}
	}
	s = redactKeyValues(s)
	// The case-insensitive expressions are slow: run them only when their
	// keywords occur.
	lower := asciiLower(s)
	if strings.Contains(lower, "code=") {
		s = codeParamRE.ReplaceAllString(s, "${1}"+redactedMark)
	}
	if strings.Contains(lower, "bearer") || strings.Contains(lower, "basic") ||
		strings.Contains(lower, "dpop") || strings.Contains(lower, "mac") {
		s = authSchemeRE.ReplaceAllString(s, "${1}"+redactedMark)
	}
	s = tokenRunRE.ReplaceAllStringFunc(s, redactTokenRun)
	return s
}

// redactTokenRun redacts a run of token characters if it looks like a
// token. A run containing "//" is a URL: its path segments are judged one by
// one, so that documentation links survive.
func redactTokenRun(run string) string {
	if !strings.Contains(run, "//") {
		if tokenLike(run) {
			return redactedMark
		}
		return run
	}
	parts := strings.Split(run, "/")
	for i, p := range parts {
		if tokenLike(p) {
			parts[i] = redactedMark
		}
	}
	return strings.Join(parts, "/")
}

// tokenLike reports whether s looks like a token or secret: at least
// minTokenRun characters with both letters and digits.
func tokenLike(s string) bool {
	if len(s) < minTokenRun {
		return false
	}
	var letter, digit bool
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z':
			letter = true
		case '0' <= b && b <= '9':
			digit = true
		}
	}
	return letter && digit
}

// sanitizeCode returns an OAuth error code lower-cased, or "" if it is not a
// plausible code: 1 to 64 characters of a-z, 0-9, '_', '.', ':' and '-',
// not token-like and not containing a secret.
func sanitizeCode(code string, secrets []string) string {
	code = strings.ToLower(strings.TrimSpace(code))
	if code == "" || len(code) > 64 || tokenLike(code) {
		return ""
	}
	for i := 0; i < len(code); i++ {
		switch b := code[i]; {
		case 'a' <= b && b <= 'z', '0' <= b && b <= '9', b == '_', b == '.', b == ':', b == '-':
		default:
			return ""
		}
	}
	for _, s := range secrets {
		// A short secret (a test's "rt") would match inside real codes.
		if s = strings.ToLower(s); s == code || (len(s) >= 8 && strings.Contains(code, s)) {
			return ""
		}
	}
	return code
}

// truncateRunes shortens s to at most limit runes, marking a cut with "…".
func truncateRunes(s string, limit int) string {
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	i, n := 0, 0
	for i = range s {
		if n == limit {
			break
		}
		n++
	}
	return strings.TrimRight(s[:i], " ") + "…"
}

// clip shortens an untrusted string quoted in a configuration error.
func clip(s string, limit int) string {
	return truncateRunes(strings.ToValidUTF8(s, "\uFFFD"), limit)
}

// secretKeywords end the names of keys whose values redactKeyValues
// redacts: access_token, refresh_token, client_secret, password, ...
var secretKeywords = []string{
	"token", "secret", "password", "passwd", "assertion", "verifier",
	"api_key", "api-key", "apikey", "credential",
}

// redactKeyValues redacts the value after a secret-like key followed by ':'
// or '=', as in JSON ("access_token": "v"), forms and query strings
// (refresh_token=v), escaped JSON (\"token\":\"v\") and "key: value" text.
// The value runs up to a space, quote, backslash, '&', ',', ';', '<' or '>'.
// It scans by hand: a case-insensitive regular expression is far slower.
func redactKeyValues(s string) string {
	lower := asciiLower(s)
	var b strings.Builder
	last := 0
	for p := 0; p < len(s); p++ {
		switch lower[p] {
		case 't', 's', 'p', 'a', 'v', 'c':
		default:
			continue
		}
		end := -1
		for _, kw := range secretKeywords {
			if strings.HasPrefix(lower[p:], kw) {
				end = p + len(kw)
				break
			}
		}
		if end < 0 {
			continue
		}
		start, stop, ok := valueAfterKey(s, end)
		if !ok {
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(redactedMark)
		last, p = stop, stop-1
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// valueAfterKey parses, from i just after a key, an optional plural 's', an
// optional backslash and quote, spaces, ':' or '=', spaces, an optional
// backslash and quote, and returns the bounds of the value that follows.
func valueAfterKey(s string, i int) (start, stop int, ok bool) {
	skip := func(set string) {
		for i < len(s) && strings.IndexByte(set, s[i]) >= 0 {
			i++
		}
	}
	if i < len(s) && (s[i] == 's' || s[i] == 'S') {
		i++
	}
	skip(`\`)
	skip(`"'`)
	skip(" \t\n\r\f")
	if i >= len(s) || (s[i] != ':' && s[i] != '=') {
		return 0, 0, false
	}
	i++
	skip(" \t\n\r\f")
	skip(`\`)
	skip(`"'`)
	start = i
	for i < len(s) && strings.IndexByte(" \t\n\r\f\"'\\&,;<>", s[i]) < 0 {
		i++
	}
	return start, i, i > start
}

// asciiLower lower-cases the ASCII letters of s, keeping every byte offset.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// SanitizeDescription makes a provider's error description safe to show:
// control characters removed, values after token- or secret-like keys and
// long token-like runs redacted, at most a couple of hundred characters. The
// token source adapters use it for descriptions this package did not parse.
func SanitizeDescription(s string) string {
	return sanitizeText(s, descriptionLimit, false, nil)
}
