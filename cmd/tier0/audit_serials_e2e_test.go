package main

import (
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAuditCheckSerials: serials that are in the record store pass; one
// that is not is printed and fails the command; bad input is refused with
// the line number.
func TestAuditCheckSerials(t *testing.T) {
	srv := startServer(t, t.TempDir())
	var serials []string
	deadline := time.Now().Add(30 * time.Second)
	for len(serials) == 0 { // the server's own SVIDs (admin, auditor) are recorded and exported
		out := must(srv.cli("audit", "list", "-o", "json"))
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r struct{ Serial string }
			if line != "" && json.Unmarshal([]byte(line), &r) == nil && r.Serial != "" {
				serials = append(serials, r.Serial)
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no record reached the store in 30s")
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "# received\n"+strings.ToUpper(strings.Join(serials, "\n"))+"\n\n"+serials[0]+"\n")
	if out, err := srv.cli("audit", "check-serials", good); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("all present: %v: %q", err, out)
	}
	const lost = "00112233445566778899aabbccddeeff"
	bad := write("bad", serials[0]+"\n"+lost+"\n")
	out, err := srv.cli("audit", "check-serials", bad)
	if err == nil || strings.TrimSpace(out) != lost || !strings.Contains(err.Error(), "1 of 2 serials are not in the record store") {
		t.Fatalf("one missing: %v: %q", err, out)
	}
	out, err = srv.cli("audit", "check-serials", bad, "-o", "json")
	var res struct {
		Checked, Found int
		Missing        []string
	}
	if err == nil || json.Unmarshal([]byte(out), &res) != nil || res.Checked != 2 || res.Found != 1 || len(res.Missing) != 1 || res.Missing[0] != lost {
		t.Fatalf("json: %v: %q", err, out)
	}
	if out, err := srv.cli("audit", "check-serials", write("junk", serials[0]+"\nnot-hex\n")); err == nil || !strings.Contains(err.Error(), "junk:2: not a hex serial") {
		t.Fatalf("junk: %v: %q", err, out)
	}
	// audit show finds a record by the serial as openssl prints it, in
	// colon form and in decimal.
	n, _ := new(big.Int).SetString(serials[0], 16)
	canon := fmt.Sprintf("%X", n.Bytes())
	var colon []string
	for i := 0; i < len(canon); i += 2 {
		colon = append(colon, strings.ToLower(canon[i:i+2]))
	}
	for _, sp := range []string{canon, "00" + canon, strings.Join(colon, ":"), "dec:" + n.Text(10)} {
		out, err := srv.cli("audit", "show", sp, "-o", "json")
		var r struct{ Serial, SerialHex, Kind string }
		if err != nil || json.Unmarshal([]byte(out), &r) != nil || r.Serial != serials[0] {
			t.Fatalf("audit show %s: %v: %q", sp, err, out)
		}
	}
}
