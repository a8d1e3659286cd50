package oauthtest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper/oauthtest"
)

// A client_credentials grant with net/http, then a call to the protected
// resource with the token.
func Example() {
	srv := oauthtest.NewServer(
		oauthtest.WithClient("my-service", "my-secret"),
		oauthtest.WithLifetime(90*time.Second),
	)
	defer srv.Close()

	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}
	req, _ := http.NewRequest(http.MethodPost, srv.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape("my-service"), url.QueryEscape("my-secret"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
		Scope       string `json:"scope"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.StatusCode, tok.TokenType, tok.ExpiresIn, tok.Scope)

	req, _ = http.NewRequest(http.MethodGet, srv.ResourceURL(), nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println("resource:", resp.StatusCode)
	fmt.Println("token requests:", srv.Stats().TokenRequests["client_credentials"])
	// Output:
	// 200 Bearer 90 read
	// resource: 200
	// token requests: 1
}

// Rotation with strict reuse detection: presenting a rotated refresh token
// revokes the whole family.
func ExampleWithReuseDetection() {
	srv := oauthtest.NewServer(
		oauthtest.WithClient("app", "secret"),
		oauthtest.WithRotation(true),
		oauthtest.WithReuseDetection(0),
	)
	defer srv.Close()
	first := srv.IssueRefreshToken("app", "offline_access")

	refresh := func(rt string) (status int, next string) {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		req, _ := http.NewRequest(http.MethodPost, srv.TokenURL(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("app", "secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		var body struct {
			RefreshToken string `json:"refresh_token"`
			Error        string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.RefreshToken + body.Error
	}

	status, second := refresh(first)
	fmt.Println("rotate:", status, second != first)
	status, errCode := refresh(first) // reuse of a rotated token
	fmt.Println("reuse:", status, errCode)
	status, errCode = refresh(second) // the family is gone
	fmt.Println("after:", status, errCode)
	st := srv.Stats()
	fmt.Println("reuse detections:", st.ReuseDetections, "families revoked:", st.FamiliesRevoked)
	// Output:
	// rotate: 200 true
	// reuse: 400 invalid_grant
	// after: 400 invalid_grant
	// reuse detections: 1 families revoked: 1
}

// Scripted faults answer the next token requests, one each, in order.
func ExampleServer_Script() {
	srv := oauthtest.NewServer(oauthtest.WithClient("c", "s"))
	defer srv.Close()
	srv.Script(
		oauthtest.Fault{Kind: oauthtest.FaultServerError, Status: 503, RetryAfter: "2"},
		oauthtest.Fault{Kind: oauthtest.FaultTooManyRequests, RetryAfter: "1"},
	)
	for range 3 {
		req, _ := http.NewRequest(http.MethodPost, srv.TokenURL(), strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("c", "s")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Output:
	// 503 2
	// 429 1
	// 200
}

// The device authorization grant (RFC 8628) without a browser: the device
// asks for a code, polls, the end user's approval is simulated with
// ApproveDevice, and the next poll gets the tokens.
func ExampleServer_ApproveDevice() {
	srv := oauthtest.NewServer(
		oauthtest.WithClient("tv", ""), // a public client
		oauthtest.WithDeviceInterval(0),
	)
	defer srv.Close()
	post := func(u string, form url.Values) map[string]any {
		resp, err := http.PostForm(u, form)
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	dev := post(srv.DeviceAuthorizationURL(), url.Values{"client_id": {"tv"}, "scope": {"watch"}})
	fmt.Println("verify at:", dev["verification_uri"] == srv.VerificationURL())
	poll := url.Values{
		"grant_type":  {"urn:ietf:params:oauth:grant-type:device_code"},
		"device_code": {dev["device_code"].(string)},
		"client_id":   {"tv"},
	}
	fmt.Println("poll:", post(srv.TokenURL(), poll)["error"])
	if err := srv.ApproveDevice(dev["user_code"].(string)); err != nil {
		fmt.Println(err)
		return
	}
	tok := post(srv.TokenURL(), poll)
	fmt.Println("poll:", tok["token_type"], tok["scope"], tok["refresh_token"] != nil)
	// Output:
	// verify at: true
	// poll: authorization_pending
	// poll: Bearer watch true
}

// A server that behaves as Slack's token endpoint does: tokens under
// authed_user, scopes joined with commas, no expires_in, the team kept in
// the response, and a dead grant answered 200 with ok false.
func ExampleWithPersonality() {
	srv := oauthtest.NewServer(
		oauthtest.WithClient("app", "app-secret"),
		oauthtest.WithPersonality(oauthtest.Personality{
			AuthStyle: "header", ScopeSeparator: ",", OmitExpiresIn: true, ErrorIn200: true, Rotates: true,
			AccessTokenPath: "authed_user.access_token", RefreshTokenPath: "authed_user.refresh_token",
			ScopePath: "authed_user.scope", Extra: map[string]string{"team.id": "T0001"},
		}),
	)
	defer srv.Close()

	refresh := func(rt string) map[string]any {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		req, _ := http.NewRequest(http.MethodPost, srv.TokenURL(), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("app", "app-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		fmt.Println("HTTP", resp.StatusCode)
		return body
	}
	body := refresh(srv.IssueRefreshToken("app", "chat:write channels:read"))
	user := body["authed_user"].(map[string]any)
	fmt.Println(user["scope"], body["team"], body["expires_in"])
	body = refresh("not-a-refresh-token")
	fmt.Println(body["ok"], body["error"])
	// Output:
	// HTTP 200
	// chat:write,channels:read map[id:T0001] <nil>
	// HTTP 200
	// false invalid_grant
}
