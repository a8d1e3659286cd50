package http

import "github.com/tokenkeeper/tokenkeeper"

// maskParams returns p as a response shows it: the value of every secret
// parameter (tokenkeeper.IsSecretParam) replaced by
// tokenkeeper.SealedParamValue, which an update may send back to keep the
// stored value.
func maskParams(p map[string]string) map[string]string {
	if len(p) == 0 {
		return nil
	}
	out := make(map[string]string, len(p))
	for k, v := range p {
		if tokenkeeper.IsSecretParam(k) {
			v = tokenkeeper.SealedParamValue
		}
		out[k] = v
	}
	return out
}
