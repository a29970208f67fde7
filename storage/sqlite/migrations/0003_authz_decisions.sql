-- 0003: authorization decisions (DESIGN.md invariant 5); see the Postgres
-- migration of the same number. Times are unix microseconds (UTC).
CREATE TABLE authz_decisions (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	decided_at  INTEGER NOT NULL,
	node_id     TEXT    NOT NULL,
	caller      TEXT    NOT NULL,
	requested   TEXT    NOT NULL,
	allowed     INTEGER NOT NULL,
	reason      TEXT    NOT NULL
);
CREATE INDEX authz_decisions_caller_id ON authz_decisions (caller, id);
CREATE INDEX authz_decisions_requested_id ON authz_decisions (requested, id);
CREATE INDEX authz_decisions_decided_at ON authz_decisions (decided_at);
