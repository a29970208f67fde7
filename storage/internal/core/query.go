package core

import (
	"strconv"
	"strings"
	"time"
)

// Columns is the column list of issuance_records in record field order.
const Columns = "seq, serial, spiffe_id, agent_id, not_before, not_after, issuer_key_id, " +
	"public_key_sha256, node_id, committed_at, cert_der, prev_hash, hash, event_action, event_detail"

// Placeholder styles for QuerySQL.
var (
	Dollar   = func(i int) string { return "$" + strconv.Itoa(i) }
	Question = func(int) string { return "?" }
)

// QuerySQL builds the SELECT for a normalized filter. ph renders the i-th
// (1-based) placeholder; timeArg encodes a time for the backend.
func QuerySQL(f Filter, ph func(int) string, timeArg func(time.Time) any) (string, []any) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, strings.Replace(cond, "?", ph(len(args)), 1))
	}
	if f.SPIFFEID != "" {
		add("spiffe_id = ?", f.SPIFFEID)
	}
	if f.AgentID != "" {
		add("agent_id = ?", f.AgentID)
	}
	if f.Serial != "" {
		add("serial_hex = ?", f.Serial)
	}
	if f.Kind != "" {
		add("kind = ?", f.Kind)
	}
	if f.IssuerKeyID != "" {
		add("issuer_key_id = ?", f.IssuerKeyID)
	}
	if !f.Since.IsZero() {
		add("not_before >= ?", timeArg(f.Since))
	}
	if !f.Until.IsZero() {
		add("not_before < ?", timeArg(f.Until))
	}
	if !f.CommittedSince.IsZero() {
		add("committed_at >= ?", timeArg(f.CommittedSince))
	}
	if !f.CommittedUntil.IsZero() {
		add("committed_at < ?", timeArg(f.CommittedUntil))
	}
	if f.BeforeSeq != 0 {
		add("seq < ?", int64(min(f.BeforeSeq, 1<<63-1)))
	}
	q := "SELECT " + Columns + " FROM issuance_records"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, f.Limit)
	q += " ORDER BY seq DESC LIMIT " + ph(len(args))
	return q, args
}
