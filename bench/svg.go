package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// plotColors and plotDashes tell the series apart, one per relay; the
// dashes keep a series visible where it lies on top of another.
var (
	plotColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}
	plotDashes = []string{"none", "7,4", "2,3", "9,3,2,3"}
)

// panel is one log-log chart of a figure against calls.
type panel struct {
	title      string
	unit       string
	lo, hi     float64 // y range (log10 scale); values below lo sit on lo
	limit      float64
	value      func(*Figures) float64
	x0, y0     float64 // top-left corner
	w, h       float64
	xmin, xmax float64 // calls
}

func (p *panel) px(calls float64) float64 {
	if p.xmax <= p.xmin {
		return p.x0 + p.w/2
	}
	return p.x0 + p.w*(math.Log2(calls)-math.Log2(p.xmin))/(math.Log2(p.xmax)-math.Log2(p.xmin))
}

func (p *panel) py(v float64) float64 {
	v = math.Max(v, p.lo)
	v = math.Min(v, p.hi)
	return p.y0 + p.h - p.h*(math.Log10(v)-math.Log10(p.lo))/(math.Log10(p.hi)-math.Log10(p.lo))
}

// WriteSVG draws loss and p99 added latency against calls for every relay
// (medians per step, log scales, the pass limits dashed).
func (r *Report) WriteSVG(w io.Writer) error {
	steps := r.stepCalls()
	xmin, xmax := 1.0, 2.0
	if len(steps) > 0 {
		xmin, xmax = float64(steps[0]), float64(steps[len(steps)-1])
	}
	maxP99 := 10.0
	for _, rr := range r.Relays {
		for _, s := range rr.Steps {
			maxP99 = math.Max(maxP99, s.Median.P99Ms)
		}
	}
	panels := []*panel{
		{title: "loss (both directions)", unit: "%", lo: 0.001, hi: 100, limit: r.Limits.MaxLossPct,
			value: func(f *Figures) float64 { return f.LossPct }},
		{title: "p99 added latency", unit: "ms", lo: 0.01, hi: math.Pow(10, math.Ceil(math.Log10(maxP99))), limit: ms(r.Limits.MaxP99),
			value: func(f *Figures) float64 { return f.P99Ms }},
	}
	const W, H = 960, 420
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	names := make([]string, len(r.Relays))
	for i, rr := range r.Relays {
		names[i] = rr.Spec.Name
	}
	fmt.Fprintf(&b, `<text x="%d" y="20" text-anchor="middle" font-size="14">%s</text>`+"\n", W/2,
		html.EscapeString(fmt.Sprintf("isthmus bench: %s (medians of %d runs, %v each)", strings.Join(names, " vs "), r.Repeats, r.Duration)))
	for i, p := range panels {
		p.x0, p.y0, p.w, p.h = float64(70+i*470), 50, 380, 300
		p.xmin, p.xmax = xmin, xmax
		r.drawPanel(&b, p, steps)
	}
	for i, n := range names {
		y := 395
		x := 70 + i*200
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="%s"/>`, x, y, x+30, y, plotColors[i%len(plotColors)], plotDashes[i%len(plotDashes)])
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s (capacity %d)</text>`+"\n", x+36, y+4, html.EscapeString(n), r.Relays[i].Capacity)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) drawPanel(b *strings.Builder, p *panel, steps []int) {
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`+"\n", p.x0+p.w/2, p.y0-8, html.EscapeString(p.title+" ("+p.unit+")"))
	fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#444"/>`+"\n", p.x0, p.y0, p.w, p.h)
	for e := math.Ceil(math.Log10(p.lo)); e <= math.Log10(p.hi)+1e-9; e++ {
		v := math.Pow(10, e)
		y := p.py(v)
		label := strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
		if e == math.Ceil(math.Log10(p.lo)) {
			label = "≤" + label
		}
		fmt.Fprintf(b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n",
			p.x0, y, p.x0+p.w, y, p.x0-4, y+4, label)
	}
	// Shade the steps where the generator, not only the relay, was at its
	// limit (for any relay).
	shaded := false
	for _, c := range r.generatorBoundSteps() {
		x := p.px(float64(c))
		lo, hi := math.Max(x-9, p.x0+1), math.Min(x+9, p.x0+p.w-1)
		fmt.Fprintf(b, `<rect x="%.1f" y="%.0f" width="%.1f" height="%.0f" fill="#e9e9e9"/>`+"\n", lo, p.y0+1, hi-lo, p.h-2)
		shaded = true
	}
	if shaded {
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" fill="#777" font-size="10" text-anchor="end">shaded: generator at its limit</text>`+"\n", p.x0+p.w-3, p.y0+12)
	}
	lastLabel := math.Inf(-1)
	for _, c := range steps {
		x := p.px(float64(c))
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#eee"/>`, x, p.y0, x, p.y0+p.h)
		if x-lastLabel >= 34 { // skip labels that would overlap
			fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%d</text>`, x, p.y0+p.h+16, c)
			lastLabel = x
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle">calls</text>`+"\n", p.x0+p.w/2, p.y0+p.h+32)
	ly := p.py(p.limit)
	fmt.Fprintf(b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#888" stroke-dasharray="6,4"/><text x="%.0f" y="%.1f" fill="#888">limit</text>`+"\n",
		p.x0, ly, p.x0+p.w, ly, p.x0+p.w-30, ly-4)
	for i, rr := range r.Relays {
		col, dash := plotColors[i%len(plotColors)], plotDashes[i%len(plotDashes)]
		var pts []string
		for _, s := range rr.Steps {
			x, y := p.px(float64(s.Calls)), p.py(p.value(&s.Median))
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			title := html.EscapeString(fmt.Sprintf("%s %d calls: %.4g %s", rr.Spec.Name, s.Calls, p.value(&s.Median), p.unit))
			if i%2 == 0 {
				fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"><title>%s</title></circle>`+"\n", x, y, col, title)
			} else {
				fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="7" height="7" fill="none" stroke="%s" stroke-width="1.5"><title>%s</title></rect>`+"\n", x-3.5, y-3.5, col, title)
			}
		}
		if len(pts) > 1 {
			fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2" stroke-dasharray="%s"/>`+"\n", strings.Join(pts, " "), col, dash)
		}
	}
}

// generatorBoundSteps lists the steps at which any relay's median had a
// saturated generator.
func (r *Report) generatorBoundSteps() []int {
	var out []int
	for _, c := range r.stepCalls() {
		for _, rr := range r.Relays {
			if s := rr.step(c); s != nil && s.GeneratorBound {
				out = append(out, c)
				break
			}
		}
	}
	return out
}
