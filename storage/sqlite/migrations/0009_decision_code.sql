-- 0009: the gRPC code each decision was answered with (docs/AUDIT.md
-- "Authorization decisions"): OK for an allow, PermissionDenied,
-- InvalidArgument, Unauthenticated, Unavailable, ... for a refusal. Rows
-- written before this migration (or by an older node during a rolling
-- upgrade) have ''.
ALTER TABLE authz_decisions ADD COLUMN code TEXT NOT NULL DEFAULT '';
