// Command tokenkeeper is the tokenkeeper broker and its command line: it
// serves credentials' tokens over HTTP (serve), manages them through a
// running broker (credential, token, apikey, keys), runs an OAuth2 test
// provider (testidp), an offline demonstration (demo) and benchmarks (bench),
// and gives tokens to programs without tokenkeeper code (agent, exec,
// git-credential).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var es exitStatus // exec passes its command's status through, silently
		if !errors.Is(err, errUsageShown) && !errors.As(err, &es) {
			fmt.Fprintln(os.Stderr, "tokenkeeper:", err)
		}
		os.Exit(exitCode(err))
	}
}
