package postgres

import (
	"testing"

	"github.com/tokenkeeper/tokenkeeper/internal/storetest"
)

func TestAuthStore(t *testing.T) {
	storetest.RunAuth(t, newHarness)
}
