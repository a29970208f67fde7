-- 0002: signed checkpoints (DESIGN.md invariant 7); see the Postgres
-- migration of the same number. Times are unix microseconds (UTC).
CREATE TABLE audit_checkpoints (
	seq        INTEGER PRIMARY KEY CHECK (seq > 0),
	head       BLOB    NOT NULL,
	signed_at  INTEGER NOT NULL,
	node_id    TEXT    NOT NULL,
	cert_der   BLOB    NOT NULL,
	signature  BLOB    NOT NULL
);
