-- 0010: decisions become tamper-evident (docs/AUDIT.md "Authorization
-- decisions"): the store numbers every decision written from now on
-- (chain_seq 1, 2, 3, ... without gaps, assigned under a lock, whichever
-- node writes) and links it to the one before: hash = SHA-256(prev_hash ||
-- canonical decision) (ca/record/decision.go). Rows written before this
-- migration, or by an older node during a rolling upgrade, have NULLs.
-- decision_checkpoints holds the audit key's signatures of the chain head.
ALTER TABLE authz_decisions ADD COLUMN chain_seq bigint;
ALTER TABLE authz_decisions ADD COLUMN prev_hash bytea;
ALTER TABLE authz_decisions ADD COLUMN hash bytea;
CREATE UNIQUE INDEX authz_decisions_chain_seq ON authz_decisions (chain_seq);
CREATE TABLE decision_checkpoints (
	seq        bigint      PRIMARY KEY CHECK (seq > 0),
	head       bytea       NOT NULL,
	signed_at  timestamptz NOT NULL,
	node_id    text        NOT NULL,
	cert_der   bytea       NOT NULL,
	signature  bytea       NOT NULL,
	prev_seq   bigint      NOT NULL
);
