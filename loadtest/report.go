package loadtest

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
)

// WriteJSON writes the result as indented JSON.
func WriteJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteHTML writes a self-contained HTML report (inline SVG, no scripts,
// nothing fetched): throughput and p50/p99 over time, errors by kind, and
// the latency histogram.
func WriteHTML(w io.Writer, r *Result) error {
	var xs, issued, failed, p50, p99 []float64
	for _, b := range r.Timeline {
		xs = append(xs, b.AtSec)
		issued, failed = append(issued, b.IssuedSec), append(failed, b.FailedSec)
		p50, p99 = append(p50, b.P50Ms), append(p99, b.P99Ms)
	}
	var hl []string
	var hv []float64
	for _, b := range r.Histogram {
		hl = append(hl, fmt.Sprintf("%g", b.LoMs))
		hv = append(hv, float64(b.Count))
	}
	var el []string
	var ev []float64
	for _, k := range sortedKeys(r.ErrorsByKind) {
		el, ev = append(el, "failed: "+k), append(ev, float64(r.ErrorsByKind[k]))
	}
	for _, k := range sortedKeys(r.RefusedByKind) {
		el, ev = append(el, "refused: "+k), append(ev, float64(r.RefusedByKind[k]))
	}
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	// The charts are SVG this package generates from numbers; nothing in
	// them comes from a server or a user, so they are trusted HTML.
	data := map[string]any{
		"R": r,
		"Throughput": template.HTML( //nolint:gosec // G203: generated SVG
			lineChart("SVIDs/s (by completion time)", "s", xs,
				[]series{{"issued/s", "#2b7bb9", issued}, {"failed/s", "#d62728", failed}})),
		"Latency": template.HTML( //nolint:gosec // G203: generated SVG
			lineChart("latency from intended send time (ms)", "s", xs,
				[]series{{"p50", "#2ca02c", p50}, {"p99", "#ff7f0e", p99}})),
		"Hist": template.HTML( //nolint:gosec // G203: generated SVG
			barChart("SVIDs by latency (ms, lower bound of a log bin)", hl, hv)),
		"Errors": template.HTML( //nolint:gosec // G203: generated SVG
			barChart("errors by kind", el, ev)),
		"JSON": string(raw),
	}
	return reportTmpl.Execute(w, data)
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type series struct {
	name, color string
	ys          []float64
}

const chartW, chartH, padL, padB, padT = 720, 240, 60, 30, 24

func lineChart(title, xunit string, xs []float64, ss []series) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="14" font-weight="bold">%s</text>`, padL, template.HTMLEscapeString(title))
	if len(xs) == 0 {
		b.WriteString(`<text x="60" y="60">no data</text></svg>`)
		return b.String()
	}
	xmax := math.Max(xs[len(xs)-1], 1e-9)
	ymax := 0.0
	for _, s := range ss {
		for _, y := range s.ys {
			ymax = math.Max(ymax, y)
		}
	}
	ymax = niceCeil(ymax)
	pw, ph := float64(chartW-padL-10), float64(chartH-padB-padT)
	px := func(x float64) float64 { return float64(padL) + x/xmax*pw }
	py := func(y float64) float64 { return float64(padT) + ph - y/ymax*ph }
	axes(&b, ymax, xmax, xunit)
	for i, s := range ss {
		var pts []string
		for j, y := range s.ys {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(xs[j]), py(y)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, s.color, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`, chartW-160+70*i, 14, s.color, template.HTMLEscapeString(s.name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func axes(b *strings.Builder, ymax, xmax float64, xunit string) {
	x0, y0 := padL, chartH-padB
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>`, x0, padT, x0, y0)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>`, x0, y0, chartW-10, y0)
	for i := 0; i <= 4; i++ {
		y := float64(padT) + float64(chartH-padB-padT)*float64(4-i)/4
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`, x0, y, chartW-10, y)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, x0-4, y+4, short(ymax*float64(i)/4))
		if xmax <= 0 {
			continue // bar charts label their own bars
		}
		x := float64(x0) + float64(chartW-padL-10)*float64(i)/4
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s%s</text>`, x, y0+16, short(xmax*float64(i)/4), xunit)
	}
}

func barChart(title string, labels []string, vals []float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="14" font-weight="bold">%s</text>`, padL, template.HTMLEscapeString(title))
	if len(vals) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="60">none</text></svg>`, padL)
		return b.String()
	}
	ymax := 0.0
	for _, v := range vals {
		ymax = math.Max(ymax, v)
	}
	ymax = niceCeil(ymax)
	axes(&b, ymax, 0, "")
	pw, ph := float64(chartW-padL-10), float64(chartH-padB-padT)
	bw := pw / float64(len(vals))
	for i, v := range vals {
		h := v / ymax * ph
		x := float64(padL) + float64(i)*bw
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#2b7bb9"><title>%s: %g</title></rect>`,
			x+1, float64(padT)+ph-h, math.Max(bw-2, 1), h, template.HTMLEscapeString(labels[i]), v)
		if len(vals) <= 24 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="9">%s</text>`,
				x+bw/2, chartH-padB+12, template.HTMLEscapeString(labels[i]))
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// short formats an axis value compactly.
func short(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.3g", v)
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

var reportTmpl = template.Must(template.New("report").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>tier0 loadtest: {{.R.Scenario}}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:800px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}</style></head><body>
<h1>tier0 loadtest: {{.R.Scenario}}</h1>
<p>started {{.R.Started.Format "2006-01-02 15:04:05 MST"}}; {{.R.Agents}} agents x {{.R.Workloads}} workloads</p>
<table>
<tr><th>duration</th><td>{{printf "%.2f" .R.DurationSec}} s</td></tr>
<tr><th>SVIDs issued</th><td>{{.R.Issued}}</td></tr>
<tr><th>SVIDs failed</th><td>{{.R.Failed}}</td></tr>
<tr><th>calls / retries</th><td>{{.R.Calls}} / {{.R.Retries}}</td></tr>
<tr><th>throughput</th><td>{{printf "%.0f" .R.ThroughputSec}} SVIDs/s</td></tr>
<tr><th>latency p50 / p90 / p99 / max</th><td>{{printf "%.1f" .R.Latency.P50}} / {{printf "%.1f" .R.Latency.P90}} / {{printf "%.1f" .R.Latency.P99}} / {{printf "%.1f" .R.Latency.Max}} ms</td></tr>
<tr><th>verified / failures</th><td>{{.R.Verified}} / {{.R.VerifyFailures}}</td></tr>
{{if .R.DrainSec}}<tr><th>storm drain time</th><td>{{printf "%.2f" .R.DrainSec}} s</td></tr>{{end}}
{{if .R.MaxGapSec}}<tr><th>longest issuance gap</th><td>{{printf "%.2f" .R.MaxGapSec}} s from {{printf "%.1f" .R.MaxGapStartSec}} s</td></tr>{{end}}
{{range .R.Events}}<tr><th>event {{.Name}}</th><td>at {{printf "%.2f" .AtSec}} s {{.Error}}</td></tr>{{end}}
</table>
{{range .R.VerifyErrors}}<p style="color:#d62728">{{.}}</p>{{end}}
{{with .R.Ramp}}<h2>ramp</h2><p>knee {{printf "%.0f" .KneePerSec}} SVIDs/s, peak goodput {{printf "%.0f" .PeakGoodput}} SVIDs/s
{{if .Overload}}; offered {{.Overload}}x peak ({{printf "%.0f" .OverloadRate}}/s): goodput {{printf "%.0f" .OverloadGood}}/s = {{printf "%.2f" .OverloadRatio}} of peak, p99 {{printf "%.0f" .OverloadP99Ms}} ms{{end}}</p>
<table><tr><th>offered/s</th><th>goodput/s</th><th>p50 ms</th><th>p99 ms</th><th>error rate</th><th>pass</th></tr>
{{range .Steps}}<tr><td>{{printf "%.0f" .OfferedPerSec}}</td><td>{{printf "%.0f" .GoodputPerSec}}</td><td>{{printf "%.1f" .P50Ms}}</td><td>{{printf "%.1f" .P99Ms}}</td><td>{{printf "%.3f" .ErrorRate}}</td><td>{{.Pass}}</td></tr>
{{end}}</table>{{end}}
<h2>throughput</h2>{{.Throughput}}
<h2>latency</h2>{{.Latency}}
<h2>errors by kind</h2>{{.Errors}}
<h2>latency histogram</h2>{{.Hist}}
<details><summary>result JSON</summary><pre>{{.JSON}}</pre></details>
</body></html>
`))
