package tokenkeeper

import "testing"

func TestIsSecretParam(t *testing.T) {
	for name, want := range map[string]bool{
		"client_assertion": true, "Client_Assertion": true, "assertion": true, "PASSWORD": true,
		"my_secret": true, "X-Secret-Key": true, "subject_token": true, "Api-Token": true, "tokenish": true,
		"audience": false, "resource": false, "assertion_type": false, "client_assertion_type": false,
		"passwords": false, "": false, "scope_hint": false,
	} {
		if got := IsSecretParam(name); got != want {
			t.Errorf("IsSecretParam(%q) = %v, want %v", name, got, want)
		}
	}
}
