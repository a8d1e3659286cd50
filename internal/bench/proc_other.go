//go:build !linux

package bench

import "os/exec"

// dieWithParent does nothing outside Linux: there, bench chaos stops its
// replicas itself on every exit it sees (an error, Ctrl-C, the end of the
// run), but not if it is killed outright.
func dieWithParent(*exec.Cmd) {}
