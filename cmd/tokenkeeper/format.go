package main

import (
	"errors"
	"regexp"
)

// timeLayout is how tables and messages print a moment: a date, the time
// and the zone, in the local time zone.
const timeLayout = "2006-01-02 15:04:05 MST"

// timeLayoutMilli is timeLayout with milliseconds, for events.
const timeLayoutMilli = "2006-01-02 15:04:05.000 MST"

// plural returns one for n == 1, many otherwise: "1 secret", "2 secrets".
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// apiFields are the API's field names that the CLI takes as flags.
var apiFields = regexp.MustCompile(`\b(token_url|client_id|client_secret|refresh_token|grant_type|auth_style|refresh_lead|min_ttl)\b`)

// flagWords rewrites the API's field names in a broker's error message as
// the flags the user typed (client_secret -> --client-secret).
func flagWords(err error) error {
	var ae *apiError
	if !errors.As(err, &ae) {
		return err
	}
	ae.Detail = apiFields.ReplaceAllStringFunc(ae.Detail, func(f string) string {
		b := []byte(f)
		for i := range b {
			if b[i] == '_' {
				b[i] = '-'
			}
		}
		return "--" + string(b)
	})
	return err
}
