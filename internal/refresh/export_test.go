package refresh

// SetBusyElsewhere makes the lanes of the refreshers created from now on
// take the host for busy, or not, as f says (nil: look at the host), and
// returns a function that sets it back. Not for parallel tests.
func SetBusyElsewhere(f func() bool) (restore func()) {
	old := laneBusyElsewhere
	laneBusyElsewhere = f
	return func() { laneBusyElsewhere = old }
}
