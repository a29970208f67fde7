-- 0007: signed Merkle tree checkpoints (internal/tlog, docs/AUDIT.md
-- "Merkle tree and proofs"): a C2SP tlog-checkpoint signed note over the
-- tree of records 1..size, signed by the leader's audit key, whose
-- certificate is stored beside it.
CREATE TABLE tree_checkpoints (
	size       bigint      PRIMARY KEY CHECK (size > 0),
	note       bytea       NOT NULL,
	cert_der   bytea       NOT NULL,
	signed_at  timestamptz NOT NULL
);
