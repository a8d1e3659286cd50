package client

import (
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

func TestWrapSourceErrorSanitizesProviderWords(t *testing.T) {
	secret := "rt_Abc123def456ghi789jkl012mno345"
	err := wrapSourceError(&oauth2.RetrieveError{
		Response:         &http.Response{StatusCode: 400},
		ErrorCode:        "invalid_grant",
		ErrorDescription: "refresh_token=" + secret + " is not valid",
	})
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks the refresh token: %v", err)
	}
	if !strings.Contains(err.Error(), "invalid_grant") || !IsPermanent(err) {
		t.Fatalf("error lost its code: %v", err)
	}
}
