package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemoConsoleSignIn: the demo prints the web console's URL and a
// sign-in that works: the console's overview then lists the demo's
// credentials.
func TestDemoConsoleSignIn(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"tokenkeeper", "demo", "--duration", "60s"}, func(string) string { return "" },
			strings.NewReader(""), &out, &errb)
	}()
	re := regexp.MustCompile(`web console +(http://\S+/ui/) \(sign in as (\S+), password (\S+)\)`)
	var m []string
	for deadline := time.Now().Add(60 * time.Second); m == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the demo printed no console sign-in:\n%s\n%s", out.String(), errb.String())
		}
		m = re.FindStringSubmatch(out.String())
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	get := func(u string) string {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	page := get(m[1] + "login")
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if csrf == nil {
		t.Fatalf("sign-in page: %.300s", page)
	}
	resp, err := c.PostForm(m[1]+"login", url.Values{"csrf": {csrf[1]}, "username": {m[2]}, "password": {m[3]}, "next": {"/ui/"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "Overview") || !strings.Contains(string(b), "Sign out") {
		t.Fatalf("after signing in: %d %.500s", resp.StatusCode, b)
	}
	if list := get(m[1] + "credentials"); !strings.Contains(list, "calendar") || !strings.Contains(list, "payments-api") {
		t.Fatalf("credentials page: %.500s", list)
	}
	cancel()
	if err := <-done; err != nil && ctx.Err() == nil {
		t.Fatalf("demo: %v", err)
	}
}
