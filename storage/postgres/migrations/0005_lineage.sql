-- 0005: the lineage the store holds (ca/record.Lineage). One row, written
-- once by the first exporter (an INSERT that only one writer can win) and
-- never changed: from then on the exporter of a journal of another cluster
-- or lineage refuses to write here (ha/DESIGN.md "Store identity"). A store
-- claimed by a lineage restored without its old store starts after
-- base_seq: records 1..base_seq are in the previous store, and the first
-- record here links to base_hash. Stores created before this migration have
-- no row until a journal that continues their chain claims them.
CREATE TABLE store_lineage (
	id          integer     PRIMARY KEY CHECK (id = 1),
	cluster_id  text        NOT NULL,
	lineage     text        NOT NULL,
	base_seq    bigint      NOT NULL CHECK (base_seq >= 0),
	base_hash   bytea       NOT NULL,
	parent      text        NOT NULL DEFAULT '',
	created_at  timestamptz NOT NULL,
	claimed_at  timestamptz NOT NULL,
	claimed_by  text        NOT NULL
);
