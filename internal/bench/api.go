package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// postJSON posts in as JSON to the broker at base+path with an API key and
// decodes the JSON answer into out (if not nil). An answer other than 2xx is
// an error naming the status and the problem's detail.
func postJSON(ctx context.Context, hc *http.Client, base, apiKey, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the broker at %s: %s", base, connCause(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var problem struct {
			Detail string `json:"detail"`
		}
		if json.Unmarshal(data, &problem) != nil || problem.Detail == "" {
			problem.Detail = strings.TrimSpace(http.StatusText(resp.StatusCode))
		}
		return fmt.Errorf("server answered %d: %s", resp.StatusCode, problem.Detail)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
	}
	return nil
}

// connCause names the kind of a transport error, without its details.
func connCause(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "connection error"
}
