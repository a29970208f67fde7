-- 0005: the lineage the store holds, one row written once by the first
-- exporter; see the Postgres migration of the same number. Times are unix
-- microseconds (UTC).
CREATE TABLE store_lineage (
	id          INTEGER PRIMARY KEY CHECK (id = 1),
	cluster_id  TEXT    NOT NULL,
	lineage     TEXT    NOT NULL,
	base_seq    INTEGER NOT NULL CHECK (base_seq >= 0),
	base_hash   BLOB    NOT NULL,
	parent      TEXT    NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	claimed_at  INTEGER NOT NULL,
	claimed_by  TEXT    NOT NULL
);
