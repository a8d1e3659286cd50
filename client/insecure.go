package client

// WithInsecureBroker lets Broker use a plain-http broker URL whose host is
// not loopback. Without it such a URL is refused, since the API key and
// the tokens would cross the network unencrypted; loopback (localhost,
// 127.0.0.0/8, ::1) is always allowed. For test setups only. Other
// sources ignore it (see Config.InsecureHTTP).
func WithInsecureBroker() Option {
	return func(s *settings) error {
		s.insecureBroker = true
		return nil
	}
}
