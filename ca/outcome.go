package ca

// FailureClass names the kind of a failed request's error in a few
// words: its sentinel ("issuer error", "invalid ttl"), or the journal's
// innermost error ("no space left on device"). It never carries the
// signer's own text (key ARNs, endpoints). The decision log records an
// authorized request that failed (Result.EntryID set with Err) as
// "failed: allowed by entry E but not issued: <class>".
func FailureClass(err error) string { return errClass(err) }
