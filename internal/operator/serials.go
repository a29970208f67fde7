package operator

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/storage/serial"
)

// ReadSerials reads one serial a line in any spelling storage/serial
// accepts (blank lines and # comments skipped), without duplicates (two
// spellings of one serial count once), in file order, as written.
func ReadSerials(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		c, err := serial.Canonical(s)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: not a hex serial: %w", path, line, err)
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no serials", path)
	}
	return out, nil
}

// MissingSerials looks every serial up through the Audit API and returns
// those not found, sorted; with wait > 0 it looks again for the missing
// ones every second until none is missing or wait has passed.
func MissingSerials(ctx context.Context, c *client.Client, serials []string, wait time.Duration, parallel int) ([]string, error) {
	deadline := time.Now().Add(wait)
	todo := serials
	for {
		var mu sync.Mutex
		var missing []string
		eg, ectx := errgroup.WithContext(ctx)
		eg.SetLimit(max(parallel, 1))
		for _, s := range todo {
			eg.Go(func() error {
				resp, err := c.Audit().ListRecords(ectx, &tier0v1.ListRecordsRequest{Serial: s, Limit: 1})
				if err != nil {
					return Err(err)
				}
				if len(resp.GetRecords()) == 0 {
					mu.Lock()
					missing = append(missing, s)
					mu.Unlock()
				}
				return nil
			})
		}
		if err := eg.Wait(); err != nil {
			return nil, err
		}
		slices.Sort(missing)
		if len(missing) == 0 || !time.Now().Before(deadline) {
			return missing, nil
		}
		todo = missing
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
