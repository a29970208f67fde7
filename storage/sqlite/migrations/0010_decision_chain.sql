-- 0010: the decision chain and its signed checkpoints; see the Postgres
-- migration. Times are unix microseconds (UTC).
ALTER TABLE authz_decisions ADD COLUMN chain_seq INTEGER;
ALTER TABLE authz_decisions ADD COLUMN prev_hash BLOB;
ALTER TABLE authz_decisions ADD COLUMN hash BLOB;
CREATE UNIQUE INDEX authz_decisions_chain_seq ON authz_decisions (chain_seq);
CREATE TABLE decision_checkpoints (
	seq        INTEGER PRIMARY KEY CHECK (seq > 0),
	head       BLOB    NOT NULL,
	signed_at  INTEGER NOT NULL,
	node_id    TEXT    NOT NULL,
	cert_der   BLOB    NOT NULL,
	signature  BLOB    NOT NULL,
	prev_seq   INTEGER NOT NULL
);
