package core

import "fmt"

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

// RangeSQL is the query of Store.Range: records from..to (to == 0: no
// upper bound) in seq order, with ph's placeholders.
func RangeSQL(from, to uint64, ph func(int) string) (string, []any) {
	q := "SELECT " + Columns + " FROM issuance_records WHERE seq >= " + ph(1)
	args := []any{Clamp(from)}
	if to != 0 {
		q += " AND seq <= " + ph(2)
		args = append(args, Clamp(to))
	}
	return q + " ORDER BY seq", args
}

// Each calls fn with every row scanned by scan, in order. A scan or rows
// error is returned wrapped with prefix; fn's error as it is.
func Each[T any](rows Rows, prefix string, scan func() (T, error), fn func(T) error) error {
	for rows.Next() {
		v, err := scan()
		if err != nil {
			return fmt.Errorf("%s: %w", prefix, err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	return nil
}

// Clamp maps a seq to the databases' signed 64-bit integer.
func Clamp(v uint64) int64 {
	if v > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(v)
}

// NonNil turns nil into an empty slice (the BLOB/bytea columns are NOT NULL).
func NonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
