-- 0004: each checkpoint signs the seq of the one before it (NULL on
-- checkpoints signed before the link existed), so that a deleted
-- checkpoint is detected at the next one; see the Postgres migration of
-- the same number.
ALTER TABLE audit_checkpoints ADD COLUMN prev_seq INTEGER CHECK (prev_seq >= 0 AND prev_seq < seq);
