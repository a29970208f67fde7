-- 0004: checkpoints form a chain. prev_seq is the seq of the checkpoint
-- before this one (0: none), covered by the checkpoint's signature
-- (message v2), so `tier0 audit verify` reports a deleted checkpoint at
-- the next one. NULL on checkpoints signed before the link existed (v1).
ALTER TABLE audit_checkpoints ADD COLUMN prev_seq bigint CHECK (prev_seq >= 0 AND prev_seq < seq);
