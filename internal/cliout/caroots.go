package cliout

import (
	"fmt"
	"io"
	"strings"
	"time"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// CARoots prints `tier0 ca list`: a table, and the serving node's signing
// mode on errw; or with -o json the answer without the certificates.
func CARoots(w, errw io.Writer, format string, resp *tier0v1.ListCARootsResponse) error {
	if format == JSON {
		for _, r := range resp.GetRoots() {
			r.CertDer = nil
		}
		return PrintJSON(w, resp)
	}
	tw := tabs(w)
	fmt.Fprintf(tw, "ID\tSTATE\tNODES\tNOT_AFTER\tKEY_ID\n")
	for _, r := range resp.GetRoots() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.GetId(), rootState(r), rootNodes(r), time.Unix(r.GetNotAfter(), 0).UTC().Format(time.RFC3339), r.GetKeyId())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(errw, "signing mode of the serving node: %s\n", resp.GetSigningMode())
	return err
}

// CARootPrepared prints `tier0 ca prepare`: the new root's ID alone on w
// and the next step on errw, or with -o json the root (no certificate).
func CARootPrepared(w, errw io.Writer, format string, r *tier0v1.CARoot) error {
	if format == JSON {
		r.CertDer = nil
		return PrintJSON(w, r)
	}
	if _, err := fmt.Fprintln(w, r.GetId()); err != nil {
		return err
	}
	_, err := fmt.Fprintf(errw, "prepared root %s (key %s): it is in the bundle now; distribute the bundle, then `tier0 ca activate %s`\n",
		r.GetId(), r.GetKeyId(), r.GetId())
	return err
}

// CARootActivated prints `tier0 ca activate`: the server's warning on
// errw, then one line or the root (no certificate) as JSON.
func CARootActivated(w, errw io.Writer, format string, resp *tier0v1.ActivateCARootResponse) error {
	if warn := resp.GetWarning(); warn != "" {
		fmt.Fprintf(errw, "WARNING: %s\n", warn)
	}
	r := resp.GetRoot()
	r.CertDer = nil
	return Change(w, format, r, "activated root %s (key %s): it signs new SVIDs from now on", r.GetId(), r.GetKeyId())
}

// rootState is a root's cluster state, marked when tainted.
func rootState(r *tier0v1.CARoot) string {
	if r.GetTainted() {
		return r.GetState() + ",tainted"
	}
	return r.GetState()
}

// rootNodes is "node1=active node2=activating ..." for the table.
func rootNodes(r *tier0v1.CARoot) string {
	parts := make([]string, 0, len(r.GetNodes()))
	for _, n := range r.GetNodes() {
		st, _, notReady := strings.Cut(n.GetState(), " (")
		if notReady {
			st += "(not-ready)" // the reason: -o json
		}
		parts = append(parts, n.GetNode()+"="+st)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}
