package loadtest

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// startProgress draws a progress line: redrawn in place every 250ms on a
// terminal, a plain line every 5s otherwise. It returns a stop func that
// prints the final state.
func startProgress(w io.Writer, tty bool, name string, rec *Recorder, total int64) func() {
	if w == nil {
		return func() {}
	}
	every := 5 * time.Second
	if tty {
		every = 250 * time.Millisecond
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		var lastIssued int64
		last := time.Now()
		draw := func(final bool) {
			now := time.Now()
			issued := rec.issued.Load()
			rate := float64(issued-lastIssued) / now.Sub(last).Seconds()
			lastIssued, last = issued, now
			line := progressLine(name, now.Sub(rec.start), issued, total, rate,
				rec.failed.Load(), rec.retries.Load(), rec.inflight.Load())
			switch {
			case tty && final:
				fmt.Fprintf(w, "\r\033[K%s\n", line)
			case tty:
				fmt.Fprintf(w, "\r\033[K%s", line)
			default:
				fmt.Fprintln(w, line)
			}
		}
		for {
			select {
			case <-t.C:
				draw(false)
			case <-stop:
				draw(true)
				return
			}
		}
	}()
	return func() { close(stop); wg.Wait() }
}

func progressLine(name string, elapsed time.Duration, issued, total int64, rate float64, failed, retries, inflight int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s %6.1fs ", name, elapsed.Seconds())
	if total > 0 {
		const width = 24
		n := int(min(issued*width/max(total, 1), width))
		fmt.Fprintf(&b, "[%s%s] %d/%d ", strings.Repeat("=", n), strings.Repeat(" ", width-n), issued, total)
	} else {
		fmt.Fprintf(&b, "issued %d ", issued)
	}
	fmt.Fprintf(&b, "%8.0f/s  errors %d  retries %d  in flight %d", rate, failed, retries, inflight)
	return b.String()
}
