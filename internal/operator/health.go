package operator

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tier0-ca/tier0/internal/serverinfo"
)

// HealthOptions say which node `tier0 healthcheck` asks, and how.
type HealthOptions struct {
	Addr    string // the node's health address (HOST:PORT); default DataDir's server.json's
	DataDir string
	Verbose bool          // ask /healthz?verbose&standbyok (the node's status as JSON), not /readyz
	Timeout time.Duration // for the whole answer
}

// HealthAnswer is what the node answered (Code 0: it did not).
type HealthAnswer struct {
	Code int
	Text string // the body, trimmed
}

// Health asks a node's health endpoint over plain HTTP. The error says
// why it is not ready (any answer but 200) or does not answer.
func Health(ctx context.Context, o HealthOptions) (HealthAnswer, error) {
	if o.Addr == "" {
		info, err := serverinfo.Read(o.DataDir)
		if err != nil || info.HTTP == "" {
			return HealthAnswer{}, fmt.Errorf("healthcheck: no --http and no running server in %s (server.json: %v)", o.DataDir, err)
		}
		o.Addr = info.HTTP
	}
	path := "/readyz"
	if o.Verbose {
		path = "/healthz?verbose&standbyok"
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+o.Addr+path, nil)
	if err != nil {
		return HealthAnswer{}, fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return HealthAnswer{}, fmt.Errorf("healthcheck: %s not answering: %w", o.Addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	a := HealthAnswer{Code: resp.StatusCode, Text: strings.TrimSpace(string(body))}
	if a.Code != http.StatusOK {
		first, _, _ := strings.Cut(a.Text, "\n")
		return a, fmt.Errorf("healthcheck: %s: %d %s", o.Addr, a.Code, first)
	}
	return a, nil
}
