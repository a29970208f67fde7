-- 0002: signed checkpoints (DESIGN.md invariant 7). The leader signs
-- (seq, head, signed_at, node_id) with the CA's audit key; cert_der is the
-- audit key's certificate, issued by a CA root, so that `tier0 audit verify`
-- needs only the trust bundle. A checkpoint at or below the oldest stored
-- record is kept by `tier0 storage prune` as the chain's new anchor.
CREATE TABLE audit_checkpoints (
	seq        bigint      PRIMARY KEY CHECK (seq > 0),
	head       bytea       NOT NULL,
	signed_at  timestamptz NOT NULL,
	node_id    text        NOT NULL,
	cert_der   bytea       NOT NULL,
	signature  bytea       NOT NULL
);
