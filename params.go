package tokenkeeper

import "strings"

// SealedParamValue is what the API shows, and what it accepts back on an
// update to mean "keep the stored value", in place of the value of a
// secret parameter (see IsSecretParam).
const SealedParamValue = "<sealed>"

// IsSecretParam reports whether a credential parameter (Credential.Params)
// named name holds a secret: client_assertion, assertion, password, or any
// name containing "secret" or "token", whatever the case. The stores seal
// the values of such parameters as they seal client secrets; the API never
// shows them and no log or event carries them.
func IsSecretParam(name string) bool {
	n := strings.ToLower(name)
	switch n {
	case "client_assertion", "assertion", "password":
		return true
	}
	return strings.Contains(n, "secret") || strings.Contains(n, "token")
}

// MaxExtras bounds how many fields a credential keeps besides its tokens.
const MaxExtras = 32

// ValidateExtra checks one field a credential keeps besides its tokens
// (Credential.Extras): a name of at most 100 letters, digits, '.', '_' and
// '-' that does not name a secret (IsSecretParam), and a printable value of
// at most 512 bytes. Returns EINVALID.
func ValidateExtra(name, value string) error {
	if name == "" || len(name) > 100 || IsSecretParam(name) && !strings.HasSuffix(strings.ToLower(name), "token_type") {
		return Errorf(EINVALID, "extra field %q: a name of 1 to 100 characters that names no token or secret", truncate(name, 40))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return Errorf(EINVALID, "extra field %q: letters, digits, '.', '_' and '-' only", truncate(name, 40))
		}
	}
	if len(value) > 512 {
		return Errorf(EINVALID, "extra field %s: the value is longer than 512 bytes", name)
	}
	for _, r := range value {
		if r < 0x20 || r == 0x7f {
			return Errorf(EINVALID, "extra field %s: the value holds control characters", name)
		}
	}
	return nil
}
