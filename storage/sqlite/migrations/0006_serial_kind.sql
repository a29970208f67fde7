-- 0006: every record is found by its serial in any spelling, and JWT-SVIDs
-- are told apart from X.509 certificates (docs/AUDIT.md "Serial numbers");
-- see the Postgres migration of the same number.
-- serial_hex is the canonical serial (storage/serial.Format: upper-case
-- hex, no leading zero bytes, two digits a byte), computed from the hashed
-- serial column (big.Int.Text(16): lower case, no leading zeros) for the
-- existing rows and for every row written later, by any tier0 version.
-- serial itself stays as signed: it is part of the record's hash.
-- kind is 'jwt' for a JWT-SVID (issuer_key_id "jwt:<kid>", serial = jti),
-- else 'x509'.
ALTER TABLE issuance_records ADD COLUMN serial_hex TEXT GENERATED ALWAYS AS (
	CASE
		WHEN upper(ltrim(serial, '0')) = '' THEN '00'
		WHEN length(ltrim(serial, '0')) % 2 = 1 THEN '0' || upper(ltrim(serial, '0'))
		ELSE upper(ltrim(serial, '0'))
	END) VIRTUAL;
ALTER TABLE issuance_records ADD COLUMN kind TEXT GENERATED ALWAYS AS (
	CASE WHEN issuer_key_id LIKE 'jwt:%' THEN 'jwt' ELSE 'x509' END) VIRTUAL;
CREATE INDEX issuance_records_serial_hex ON issuance_records (serial_hex);
CREATE INDEX issuance_records_kind_seq ON issuance_records (kind, seq);
