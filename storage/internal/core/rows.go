package core

// Rows is what a result set of either driver (pgx.Rows, *sql.Rows) offers
// for iteration.
type Rows interface {
	Next() bool
	Err() error
}

// Collect scans every row with scan (which reads the current row) and
// returns them in order; the caller wraps the error and closes rows.
func Collect[T any](rows Rows, scan func() (T, error)) ([]T, error) {
	var out []T
	for rows.Next() {
		v, err := scan()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
