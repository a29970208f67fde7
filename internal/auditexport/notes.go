package auditexport

// TreeNotes returns the signed notes of the export's tree checkpoints,
// smallest first, with the witness cosignature lines the log stored with
// them (AuditLog.AddCosignature): `audit verify --export --witness` takes
// its cosignatures from here when no --cosigned file is given.
func (e *Export) TreeNotes() [][]byte {
	out := make([][]byte, len(e.trees))
	for i, tc := range e.trees {
		out[i] = tc.Note
	}
	return out
}
