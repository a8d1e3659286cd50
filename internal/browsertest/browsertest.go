// Package browsertest starts Debian's chromium through chromedp for the
// browser tests of the broker's pages and oauthtest's pages, and saves the
// screenshots a person can look at. It is used by tests only.
//
// Without chromium, Chrome skips the test under -short and fails it
// otherwise; with CI=true it always fails (.ci/run installs chromium).
// Every function is safe for concurrent use by separate tests.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chrome starts a headless chromium for one test, with a window of width
// by height pixels, and returns its context (90 s at most). It stops with
// the test. Every host name but 127.0.0.1 fails to resolve.
func Chrome(t *testing.T, width, height int) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		switch {
		case os.Getenv("CI") == "true":
			t.Fatalf("chromium is required in CI: %v", err)
		case testing.Short():
			t.Skipf("chromium not found (%v); browser tests skip under -short", err)
		default:
			t.Fatalf("chromium not found (%v); install it (apt-get install chromium) or run with -short", err)
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests may run as root
		chromedp.Flag("disable-dev-shm-usage", true),
		// Loopback only: every other host name fails to resolve.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
		chromedp.WindowSize(width, height),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	// The first call starts the browser; it must not have a timeout, which
	// would stop the browser when it ends.
	if err := chromedp.Do(bctx); err != nil {
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancelTimeout := context.WithTimeout(bctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancelBrowser()
		cancelAlloc()
	})
	return ctx
}

// ScreenshotDir returns $TOKENKEEPER_SCREENSHOTS, created if need be, or a
// temporary directory of the test.
func ScreenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TOKENKEEPER_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Screenshot saves a PNG of the whole page to dir as name.png.
func Screenshot(t *testing.T, dir, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		png, err := chromedp.FullScreenshot(100)(ctx, tg)
		if err != nil {
			return err
		}
		path := filepath.Join(dir, name+".png")
		t.Logf("screenshot %s", path)
		return os.WriteFile(path, png, 0o644)
	})
}

// TextOf reads the visible text of the element with the given id into out.
func TextOf(id string, out *string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		s, err := chromedp.Text(chromedp.ID(id))(ctx, tg)
		*out = s
		return err
	})
}
