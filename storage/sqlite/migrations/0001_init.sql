-- 0001: issuance records (DESIGN.md invariants 2 and 7).
-- Times are unix microseconds (UTC), matching record.Truncate.
-- Later migrations add checkpoints (signed chain heads) and authorization
-- decisions as 0002_checkpoints.sql, 0003_authz_decisions.sql, ...
CREATE TABLE issuance_records (
	seq               INTEGER PRIMARY KEY CHECK (seq > 0),
	serial            TEXT    NOT NULL UNIQUE,
	spiffe_id         TEXT    NOT NULL,
	agent_id          TEXT    NOT NULL DEFAULT '',
	not_before        INTEGER NOT NULL,
	not_after         INTEGER NOT NULL,
	issuer_key_id     TEXT    NOT NULL,
	public_key_sha256 TEXT    NOT NULL,
	node_id           TEXT    NOT NULL,
	committed_at      INTEGER NOT NULL,
	cert_der          BLOB    NOT NULL,
	prev_hash         BLOB    NOT NULL,
	hash              BLOB    NOT NULL
);
CREATE INDEX issuance_records_spiffe_id_seq ON issuance_records (spiffe_id, seq);
CREATE INDEX issuance_records_agent_id_seq ON issuance_records (agent_id, seq);
CREATE INDEX issuance_records_not_before ON issuance_records (not_before);
CREATE INDEX issuance_records_issuer_key_id ON issuance_records (issuer_key_id);
