-- 0008: admin event records (docs/AUDIT.md "Admin events"): every state
-- change is a record in the same chain as the certificates, with its
-- action and content (a JSON object). Both are '' in certificate records,
-- so rows written by older tier0 versions stay certificates. kind becomes
-- 'admin' for them (the generated column is dropped, with its index, and
-- added again with the new case; this rewrites the table once).
ALTER TABLE issuance_records ADD COLUMN event_action text NOT NULL DEFAULT '';
ALTER TABLE issuance_records ADD COLUMN event_detail bytea NOT NULL DEFAULT '';
ALTER TABLE issuance_records DROP COLUMN kind;
ALTER TABLE issuance_records ADD COLUMN kind text GENERATED ALWAYS AS (
	CASE WHEN event_action <> '' THEN 'admin' WHEN issuer_key_id LIKE 'jwt:%' THEN 'jwt' ELSE 'x509' END) STORED;
CREATE INDEX issuance_records_kind_seq ON issuance_records (kind, seq);
