package auditcli

import (
	"fmt"
	"time"
)

// ParseTime reads the time flag --name: RFC 3339 or a positive duration
// ago (relative to now).
func ParseTime(name, s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--%s %q: a duration must be positive", name, s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s %q: want RFC 3339 (2026-01-02T15:04:05Z) or a duration (1h)", name, s)
	}
	if t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("--%s %q: outside years 1970-9999", name, s)
	}
	return t, nil
}

// TimeFlag is one time flag to parse into a Unix time.
type TimeFlag struct {
	Name string // the flag name, for errors
	In   string // the flag value; empty: not given, Out untouched
	Out  *int64 // receives the Unix time
}

// ParseTimes parses every given flag of fs (ParseTime) into its Out.
func ParseTimes(now time.Time, fs ...TimeFlag) error {
	for _, f := range fs {
		if f.In == "" {
			continue
		}
		t, err := ParseTime(f.Name, f.In, now)
		if err != nil {
			return err
		}
		*f.Out = t.Unix()
	}
	return nil
}
