// Package serverinfo is DATA/server.json: where a running `tier0 server`
// says it listens, so that the CLI (and drills, tests and load tests)
// find it from the data dir alone.
package serverinfo

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tier0-ca/tier0/internal/atomicfile"
)

// File is the file name inside the data dir.
const File = "server.json"

// Info is the content of DATA/server.json.
type Info struct {
	TrustDomain string   `json:"trust_domain"`
	Servers     []string `json:"servers"` // API addresses: this node's first, then the cluster's (--join)
	NodeID      string   `json:"node_id"`
	HTTP        string   `json:"http"` // health and metrics
	PID         int      `json:"pid"`
}

// Write replaces DATA/server.json atomically.
func Write(dir string, info Info) error {
	raw, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("serverinfo: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, File), raw, 0o644); err != nil {
		return fmt.Errorf("serverinfo: %w", err)
	}
	return nil
}

// Read reads DATA/server.json; a missing file is an error wrapping
// fs.ErrNotExist.
func Read(dir string) (Info, error) {
	var info Info
	raw, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		return info, fmt.Errorf("%s: %w", filepath.Join(dir, File), err)
	}
	return info, nil
}
