-- 0003: authorization decisions (DESIGN.md invariant 5), written by each
-- node straight to the store (not journaled; see docs/AUDIT.md).
CREATE TABLE authz_decisions (
	id          bigserial   PRIMARY KEY,
	decided_at  timestamptz NOT NULL,
	node_id     text        NOT NULL,
	caller      text        NOT NULL,
	requested   text        NOT NULL,
	allowed     boolean     NOT NULL,
	reason      text        NOT NULL
);
CREATE INDEX authz_decisions_caller_id ON authz_decisions (caller, id);
CREATE INDEX authz_decisions_requested_id ON authz_decisions (requested, id);
CREATE INDEX authz_decisions_decided_at ON authz_decisions (decided_at);
