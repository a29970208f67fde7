-- 0001: issuance records (DESIGN.md invariants 2 and 7).
-- Times are timestamptz (microseconds), matching record.Truncate.
-- Later migrations add checkpoints (signed chain heads) and authorization
-- decisions as 0002_checkpoints.sql, 0003_authz_decisions.sql, ...
CREATE TABLE issuance_records (
	seq               bigint      PRIMARY KEY CHECK (seq > 0),
	serial            text        NOT NULL UNIQUE,
	spiffe_id         text        NOT NULL,
	agent_id          text        NOT NULL DEFAULT '',
	not_before        timestamptz NOT NULL,
	not_after         timestamptz NOT NULL,
	issuer_key_id     text        NOT NULL,
	public_key_sha256 text        NOT NULL,
	node_id           text        NOT NULL,
	committed_at      timestamptz NOT NULL,
	cert_der          bytea       NOT NULL,
	prev_hash         bytea       NOT NULL,
	hash              bytea       NOT NULL
);
CREATE INDEX issuance_records_spiffe_id_seq ON issuance_records (spiffe_id, seq);
CREATE INDEX issuance_records_agent_id_seq ON issuance_records (agent_id, seq);
CREATE INDEX issuance_records_not_before ON issuance_records (not_before);
CREATE INDEX issuance_records_issuer_key_id ON issuance_records (issuer_key_id);
