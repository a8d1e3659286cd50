package sqlstore

import "context"

// EnqueueConnectedForTest writes the credential.connected deliveries of
// the named credential in a transaction of its own, as the connect flow
// does in the transaction that commits a grant.
func (s *Store) EnqueueConnectedForTest(ctx context.Context, name string) error {
	return s.write(ctx, "test connected", func(tx Querier) error {
		r, err := scanCredential(tx.QueryRow(ctx, `SELECT `+CredentialColumns+` FROM credentials WHERE name = $1`, name))
		if err != nil {
			return err
		}
		return s.webhookConnected(ctx, tx, r)
	})
}

// EnqueueConnectSessionFailedForTest writes connect_session.failed
// deliveries, as the connect flow does.
func (s *Store) EnqueueConnectSessionFailedForTest(ctx context.Context, provider, endUser, reason string) error {
	return s.write(ctx, "test connect session failed", func(tx Querier) error {
		return s.webhookConnectSessionFailed(ctx, tx, provider, endUser, reason)
	})
}
