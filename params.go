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
