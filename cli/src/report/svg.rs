//! Accessible inline-SVG charts for `kiln report`: axes with units, the Okabe–Ito palette with
//! a hatch pattern and a marker shape per series (colour is never the only cue), every datum
//! a DOM element carrying its value, and the same numbers as an HTML table.

use std::fmt::Write as _;

/// Okabe & Ito (2008), "Color Universal Design", the eight colours distinguishable under the
/// common colour-vision deficiencies (yellow last: it has the least contrast on white).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#000000", "#F0E442",
];

/// The hatch angle of series `i`'s pattern (degrees), one per colour.
const HATCH_DEGREES: [i32; 8] = [45, -45, 0, 90, 30, -60, 15, -20];

/// The marker of series `i` (cycled), so points differ in shape as well as colour.
const MARKERS: [Marker; 4] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
];

#[derive(Clone, Copy)]
enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
}

/// The drawing area in viewBox units; the SVG scales to its container's width.
const WIDTH: f64 = 860.0;
const MARGIN_LEFT: f64 = 92.0;
const MARGIN_RIGHT: f64 = 24.0;
const MARGIN_TOP: f64 = 16.0;
const MARGIN_BOTTOM: f64 = 58.0;

/// Data closer than this (viewBox units, about five pixels at laptop width, under two marker
/// radii) share one element.
const CLUSTER_UNITS: f64 = 4.0;

/// Escapes text for HTML and SVG (element content and quoted attributes).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number for an axis tick or a label: three significant digits with an SI suffix
/// (`1.5M`, `320`, `0.004`).
pub fn short(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    let (scaled, suffix) = if a >= 1e15 {
        (x / 1e15, "P")
    } else if a >= 1e12 {
        (x / 1e12, "T")
    } else if a >= 1e9 {
        (x / 1e9, "G")
    } else if a >= 1e6 {
        (x / 1e6, "M")
    } else if a >= 1e4 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let digits = if scaled.abs() >= 100.0 {
        0
    } else if scaled.abs() >= 10.0 {
        1
    } else if scaled.abs() >= 1.0 {
        2
    } else {
        (3 - scaled.abs().log10().floor() as i32).clamp(2, 8) as usize
    };
    let s = format!("{scaled:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{suffix}")
}

/// One axis: its label (with the unit), its range, linear or logarithmic, and its ticks.
pub struct Axis {
    pub label: String,
    pub min: f64,
    pub max: f64,
    pub log: bool,
    /// Category labels at positions instead of numeric ticks.
    pub categories: Vec<(f64, String)>,
}

impl Axis {
    /// A linear axis over `[min, max]`, widened to round ticks.
    pub fn linear(label: impl Into<String>, min: f64, max: f64) -> Axis {
        let (min, max) = if max > min {
            (min, max)
        } else {
            (min, min + if min == 0.0 { 1.0 } else { min.abs() })
        };
        let step = nice_step((max - min) / 5.0);
        Axis {
            label: label.into(),
            min: (min / step).floor() * step,
            max: (max / step).ceil() * step,
            log: false,
            categories: Vec::new(),
        }
    }

    /// A base-10 logarithmic axis over whole decades around `[min, max]` (both > 0).
    pub fn log(label: impl Into<String>, min: f64, max: f64) -> Axis {
        let lo = min.max(f64::MIN_POSITIVE).log10().floor();
        let hi = max.max(min * 10.0).log10().ceil().max(lo + 1.0);
        Axis {
            label: label.into(),
            min: 10f64.powf(lo),
            max: 10f64.powf(hi),
            log: true,
            categories: Vec::new(),
        }
    }

    /// Categories at 0.5, 1.5, … over `[0, n]`.
    pub fn categories(label: impl Into<String>, names: Vec<String>) -> Axis {
        Axis {
            label: label.into(),
            min: 0.0,
            max: names.len().max(1) as f64,
            log: false,
            categories: names
                .into_iter()
                .enumerate()
                .map(|(i, n)| (i as f64 + 0.5, n))
                .collect(),
        }
    }

    /// Where `v` falls along the axis, 0 at `min` and 1 at `max`.
    fn fraction(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.min);
            (v.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (v - self.min) / (self.max - self.min)
        }
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        if !self.categories.is_empty() {
            return self.categories.clone();
        }
        if self.log {
            let (lo, hi) = (self.min.log10() as i32, self.max.log10() as i32);
            return (lo..=hi)
                .map(|e| (10f64.powi(e), short(10f64.powi(e))))
                .collect();
        }
        let step = nice_step((self.max - self.min) / 5.0);
        let n = ((self.max - self.min) / step).round() as i64;
        (0..=n)
            .map(|i| {
                let v = self.min + i as f64 * step;
                // Snap to the step so 0.30000000000000004 prints as 0.3.
                let v = (v / step).round() * step;
                (v, short(v))
            })
            .collect()
    }
}

/// 1, 2 or 5 × a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    p * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// One drawn datum; each becomes an element with `class="point"` and `data-x`/`data-y`
/// (stacked segments carry their own value, not the stack's top).
pub enum Mark {
    Point {
        series: usize,
        x: f64,
        y: f64,
        /// The value as words (`<title>`, the tooltip and what a screen reader hears).
        label: String,
    },
    /// Several data at one spot of the drawing (within `CLUSTER_UNITS`): one element with
    /// `data-count`, at the first datum's values.
    Cluster {
        series: usize,
        x: f64,
        y: f64,
        count: usize,
        label: String,
    },
    /// A larger, outlined marker with a text label beside it (the declared layout).
    Highlight {
        series: usize,
        x: f64,
        y: f64,
        label: String,
    },
    /// A bar segment in data coordinates; `value` is its own size.
    Rect {
        series: usize,
        x0: f64,
        x1: f64,
        y0: f64,
        y1: f64,
        value: f64,
        label: String,
        /// Text written inside the segment when it is wide and tall enough.
        inside: Option<String>,
    },
    /// A line through points (not data elements themselves).
    Line {
        series: usize,
        points: Vec<(f64, f64)>,
        dashed: bool,
    },
    /// A shaded span of x (a phase), labelled at its top.
    XBand { x0: f64, x1: f64, label: String },
    /// A shaded span of y (a band of tolerance), labelled at its right.
    YBand { y0: f64, y1: f64, label: String },
    /// A horizontal reference line, labelled.
    HLine { y: f64, label: String },
    /// A vertical reference line, labelled.
    VLine { x: f64, label: String },
}

/// A legend entry: a series' name, drawn with its colour, pattern and marker.
pub struct Series {
    pub name: String,
    /// Filled shapes (bars) get the series' hatch pattern; points its marker.
    pub bars: bool,
}

/// One chart: a titled, described SVG with its marks.
pub struct Chart {
    /// Stable id (`lr`, `memory`): the `data-chart` attribute the tests query.
    pub id: &'static str,
    pub title: String,
    /// One or two sentences of what the chart shows, for `<desc>`.
    pub desc: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub marks: Vec<Mark>,
    /// Height of the drawing in viewBox units.
    pub height: f64,
    /// Room for the y axis's tick labels (long category names need more).
    pub margin_left: f64,
}

impl Chart {
    pub fn new(id: &'static str, title: impl Into<String>, desc: impl Into<String>) -> Chart {
        Chart {
            id,
            title: title.into(),
            desc: desc.into(),
            x: Axis::linear("", 0.0, 1.0),
            y: Axis::linear("", 0.0, 1.0),
            series: Vec::new(),
            marks: Vec::new(),
            height: 340.0,
            margin_left: MARGIN_LEFT,
        }
    }

    /// Adds a series and returns its index.
    pub fn series(&mut self, name: impl Into<String>, bars: bool) -> usize {
        self.series.push(Series {
            name: name.into(),
            bars,
        });
        self.series.len() - 1
    }

    /// How many data elements the chart draws (points, highlights and bar segments).
    pub fn points(&self) -> usize {
        self.marks
            .iter()
            .filter(|m| {
                matches!(
                    m,
                    Mark::Point { .. }
                        | Mark::Cluster { .. }
                        | Mark::Highlight { .. }
                        | Mark::Rect { .. }
                )
            })
            .count()
    }

    /// The drawing cell of a datum, for merging data that would be drawn on top of each
    /// other into one [`Mark::Cluster`] (the axes must be set).
    pub fn cell(&self, x: f64, y: f64) -> (i64, i64) {
        (
            (self.px(x) / CLUSTER_UNITS).round() as i64,
            (self.py(y) / CLUSTER_UNITS).round() as i64,
        )
    }

    fn px(&self, x: f64) -> f64 {
        self.margin_left + self.x.fraction(x) * (WIDTH - self.margin_left - MARGIN_RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        MARGIN_TOP + (1.0 - self.y.fraction(y)) * (self.height - MARGIN_TOP - MARGIN_BOTTOM)
    }

    /// The chart as an `<svg>` element (legend included).
    pub fn render(&self) -> String {
        let h = self.height;
        let mut s = String::new();
        let (left, right) = (self.margin_left, WIDTH - MARGIN_RIGHT);
        let (top, bottom) = (MARGIN_TOP, h - MARGIN_BOTTOM);
        let _ = write!(
            s,
            r#"<svg class="chart" data-chart="{id}" data-points="{n}" viewBox="0 0 {WIDTH} {h}" role="img" aria-labelledby="{id}-title {id}-desc" xmlns="http://www.w3.org/2000/svg"><title id="{id}-title">{title}</title><desc id="{id}-desc">{desc}</desc>"#,
            id = self.id,
            n = self.points(),
            title = escape(&self.title),
            desc = escape(&self.desc),
        );
        s.push('\n');
        // Hatch patterns, one per series: angle and spacing differ, so bars differ in print
        // and without colour.
        s.push_str("<defs>");
        for (i, _) in self.series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let angle = HATCH_DEGREES[i % HATCH_DEGREES.len()];
            let gap = 6 + (i % 3) * 2;
            let _ = write!(
                s,
                r#"<pattern id="{id}-p{i}" patternUnits="userSpaceOnUse" width="{gap}" height="{gap}" patternTransform="rotate({angle})"><rect width="{gap}" height="{gap}" fill="{colour}" fill-opacity="0.55"/><line x1="0" y1="0" x2="0" y2="{gap}" stroke="{colour}" stroke-width="2.5"/></pattern>"#,
                id = self.id
            );
            s.push('\n');
        }
        s.push_str("</defs>\n");
        // Bands and the grid first, then the data on top.
        for m in &self.marks {
            match m {
                Mark::XBand { x0, x1, label } => {
                    let (a, b) = (self.px(*x0).max(left), self.px(*x1).min(right));
                    let _ = write!(
                        s,
                        r#"<g class="band"><rect x="{a:.1}" y="{top:.1}" width="{w:.1}" height="{hh:.1}"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="middle">{l}</text></g>"#,
                        w = (b - a).max(0.0),
                        hh = bottom - top,
                        tx = (a + b) / 2.0,
                        ty = top + 14.0,
                        l = escape(label)
                    );
                    s.push('\n');
                }
                Mark::YBand { y0, y1, label } => {
                    let (a, b) = (self.py(*y1).max(top), self.py(*y0).min(bottom));
                    let _ = write!(
                        s,
                        r#"<g class="band warn"><rect x="{left:.1}" y="{a:.1}" width="{w:.1}" height="{hh:.1}"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="end">{l}</text></g>"#,
                        w = right - left,
                        hh = (b - a).max(0.0),
                        tx = right - 4.0,
                        ty = b - 4.0,
                        l = escape(label)
                    );
                    s.push('\n');
                }
                _ => {}
            }
        }
        // Axes: ticks, grid lines, labels with units.
        for (v, text) in self.y.ticks() {
            let y = self.py(v);
            if !(top - 0.5..=bottom + 0.5).contains(&y) {
                continue;
            }
            let _ = write!(
                s,
                r#"<line class="grid" x1="{left}" x2="{right}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{tx}" y="{ty:.1}" text-anchor="end">{t}</text>"#,
                tx = left - 6.0,
                ty = y + 4.0,
                t = escape(&text)
            );
            s.push('\n');
        }
        let rotate = self.x.categories.len() > 8;
        for (v, text) in self.x.ticks() {
            let x = self.px(v);
            if !(left - 0.5..=right + 0.5).contains(&x) {
                continue;
            }
            if rotate {
                let _ = write!(
                    s,
                    r#"<text class="tick" x="{x:.1}" y="{ty:.1}" text-anchor="end" transform="rotate(-35 {x:.1} {ty:.1})">{t}</text>"#,
                    ty = bottom + 14.0,
                    t = escape(&text)
                );
                s.push('\n');
            } else {
                let _ = write!(
                    s,
                    r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{bottom}"/><text class="tick" x="{x:.1}" y="{ty:.1}" text-anchor="middle">{t}</text>"#,
                    ty = bottom + 16.0,
                    t = escape(&text)
                );
                s.push('\n');
            }
        }
        let _ = write!(
            s,
            r#"<line class="axis" x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}"/><line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{bottom}"/><text class="label" x="{cx:.1}" y="{ly:.1}" text-anchor="middle">{xl}</text><text class="label" transform="rotate(-90)" x="{cy:.1}" y="16" text-anchor="middle">{yl}</text>"#,
            cx = (left + right) / 2.0,
            ly = h - 6.0,
            xl = escape(&self.x.label),
            cy = -(top + bottom) / 2.0,
            yl = escape(&self.y.label),
        );
        s.push('\n');
        for m in &self.marks {
            match m {
                Mark::Line {
                    series,
                    points,
                    dashed,
                } => {
                    let pts: Vec<String> = points
                        .iter()
                        .map(|(x, y)| format!("{:.1},{:.1}", self.px(*x), self.py(*y)))
                        .collect();
                    let _ = write!(
                        s,
                        r#"<polyline class="line{d}" fill="none" stroke="{c}" points="{p}"/>"#,
                        d = if *dashed { " dashed" } else { "" },
                        c = PALETTE[series % PALETTE.len()],
                        p = pts.join(" ")
                    );
                    s.push('\n');
                }
                Mark::Rect {
                    series,
                    x0,
                    x1,
                    y0,
                    y1,
                    value,
                    label,
                    inside,
                } => {
                    let (ax, bx) = (self.px(*x0), self.px(*x1));
                    let (ay, by) = (self.py(*y1), self.py(*y0));
                    let (w, hh) = ((bx - ax).abs(), (by - ay).abs());
                    let _ = write!(
                        s,
                        r#"<rect class="point" data-series="{name}" data-x="{dx}" data-y="{value}" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{hh:.1}" fill="url(#{id}-p{series})" stroke="{c}" aria-label="{l}"><title>{l}</title></rect>"#,
                        name = escape(&self.series[*series].name),
                        dx = (x0 + x1) / 2.0,
                        x = ax.min(bx),
                        y = ay.min(by),
                        id = self.id,
                        c = PALETTE[series % PALETTE.len()],
                        l = escape(label)
                    );
                    s.push('\n');
                    if let Some(text) = inside {
                        if w >= 7.5 * text.chars().count() as f64 && hh >= 16.0 {
                            let _ = write!(
                                s,
                                r#"<text class="inside" x="{x:.1}" y="{y:.1}" text-anchor="middle">{t}</text>"#,
                                x = (ax + bx) / 2.0,
                                y = (ay + by) / 2.0 + 4.5,
                                t = escape(text)
                            );
                            s.push('\n');
                        }
                    }
                }
                Mark::Point {
                    series,
                    x,
                    y,
                    label,
                } => {
                    let _ = write!(
                        s,
                        r#"<g class="point" data-series="{name}" data-x="{x}" data-y="{y}" aria-label="{l}">{shape}<title>{l}</title></g>"#,
                        name = escape(&self.series[*series].name),
                        shape = marker(*series, self.px(*x), self.py(*y), 3.5),
                        l = escape(label)
                    );
                    s.push('\n');
                }
                Mark::Cluster {
                    series,
                    x,
                    y,
                    count,
                    label,
                } => {
                    let _ = write!(
                        s,
                        r#"<g class="point" data-series="{name}" data-x="{x}" data-y="{y}" data-count="{count}">{shape}<title>{l}</title></g>"#,
                        name = escape(&self.series[*series].name),
                        shape = marker(*series, self.px(*x), self.py(*y), 3.0),
                        l = escape(label)
                    );
                    s.push('\n');
                }
                Mark::Highlight {
                    series,
                    x,
                    y,
                    label,
                } => {
                    let (px, py) = (self.px(*x), self.py(*y));
                    let anchor = if px > WIDTH * 0.6 { "end" } else { "start" };
                    let dx = if anchor == "end" { -12.0 } else { 12.0 };
                    let _ = write!(
                        s,
                        r#"<g class="point highlight" data-series="{name}" data-x="{x}" data-y="{y}" aria-label="{l}">{shape}<text x="{tx:.1}" y="{ty:.1}" text-anchor="{anchor}">{l}</text></g>"#,
                        name = escape(&self.series[*series].name),
                        shape = marker(*series, px, py, 7.0),
                        tx = px + dx,
                        ty = py - 8.0,
                        l = escape(label)
                    );
                    s.push('\n');
                }
                Mark::HLine { y, label } => {
                    let py = self.py(*y);
                    let _ = write!(
                        s,
                        r#"<g class="ref"><line x1="{left}" x2="{right}" y1="{py:.1}" y2="{py:.1}"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="end">{l}</text></g>"#,
                        tx = right - 4.0,
                        ty = py - 5.0,
                        l = escape(label)
                    );
                    s.push('\n');
                }
                Mark::VLine { x, label } => {
                    let px = self.px(*x);
                    let _ = write!(
                        s,
                        r#"<g class="ref"><line x1="{px:.1}" x2="{px:.1}" y1="{top}" y2="{bottom}"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="end">{l}</text></g>"#,
                        tx = px - 4.0,
                        ty = top + 30.0,
                        l = escape(label)
                    );
                    s.push('\n');
                }
                Mark::XBand { .. } | Mark::YBand { .. } => {}
            }
        }
        s.push_str("</svg>");
        s.push_str(&self.legend());
        s
    }

    /// The legend as HTML below the chart: a swatch (pattern or marker) and the name.
    fn legend(&self) -> String {
        if self.series.len() < 2 {
            return String::new();
        }
        let mut s = String::from(r#"<ul class="legend">"#);
        for (i, series) in self.series.iter().enumerate() {
            let swatch = if series.bars {
                format!(
                    r#"<svg width="18" height="14" aria-hidden="true"><defs>{p}</defs><rect width="18" height="14" fill="url(#{id}-l{i})" stroke="{c}"/></svg>"#,
                    p = format_args!(
                        r#"<pattern id="{id}-l{i}" patternUnits="userSpaceOnUse" width="{g}" height="{g}" patternTransform="rotate({a})"><rect width="{g}" height="{g}" fill="{c}" fill-opacity="0.55"/><line x1="0" y1="0" x2="0" y2="{g}" stroke="{c}" stroke-width="2.5"/></pattern>"#,
                        id = self.id,
                        g = 6 + (i % 3) * 2,
                        a = HATCH_DEGREES[i % HATCH_DEGREES.len()],
                        c = PALETTE[i % PALETTE.len()]
                    ),
                    id = self.id,
                    c = PALETTE[i % PALETTE.len()]
                )
            } else {
                format!(
                    r#"<svg width="18" height="14" aria-hidden="true">{}</svg>"#,
                    marker(i, 9.0, 7.0, 4.5)
                )
            };
            let _ = write!(s, "<li>{swatch} {}</li>", escape(&series.name));
        }
        s.push_str("</ul>");
        s
    }
}

/// The marker of series `i` centred at (x, y) with radius `r`.
fn marker(i: usize, x: f64, y: f64, r: f64) -> String {
    let c = PALETTE[i % PALETTE.len()];
    match MARKERS[i % MARKERS.len()] {
        Marker::Circle => format!(r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{c}"/>"#),
        Marker::Square => format!(
            r#"<rect x="{:.1}" y="{:.1}" width="{w}" height="{w}" fill="{c}"/>"#,
            x - r,
            y - r,
            w = 2.0 * r
        ),
        Marker::Triangle => format!(
            r#"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{c}"/>"#,
            x,
            y - r * 1.2,
            x - r * 1.1,
            y + r * 0.8,
            x + r * 1.1,
            y + r * 0.8
        ),
        Marker::Diamond => format!(
            r#"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{c}"/>"#,
            x,
            y - r * 1.3,
            x + r,
            y,
            x,
            y + r * 1.3,
            x - r,
            y
        ),
    }
}

/// A chart's numbers as an HTML table (inside `<details>` on the page).
pub struct Table {
    pub caption: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(caption: impl Into<String>, headers: &[&str]) -> Table {
        Table {
            caption: caption.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            "<table><caption>{}</caption><thead><tr>",
            escape(&self.caption)
        );
        for h in &self.headers {
            let _ = write!(s, r#"<th scope="col">{}</th>"#, escape(h));
        }
        s.push_str("</tr></thead><tbody>");
        for r in &self.rows {
            s.push_str("<tr>");
            for (i, c) in r.iter().enumerate() {
                if i == 0 {
                    let _ = write!(s, r#"<th scope="row">{}</th>"#, escape(c));
                } else {
                    let _ = write!(s, "<td>{}</td>", escape(c));
                }
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody></table>");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers_read_as_people_write_them() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(1.5e6), "1.5M");
        assert_eq!(short(320.0), "320");
        assert_eq!(short(0.004), "0.004");
        assert_eq!(short(2.5e15), "2.5P");
        assert_eq!(short(12_000.0), "12k");
    }

    #[test]
    fn linear_axes_end_on_round_ticks_and_log_axes_on_decades() {
        let a = Axis::linear("x", 0.0, 93.0);
        assert_eq!((a.min, a.max), (0.0, 100.0));
        assert_eq!(a.ticks().len(), 6);
        let l = Axis::log("y", 3.0, 420.0);
        assert_eq!((l.min, l.max), (1.0, 1000.0));
        assert_eq!(l.ticks().len(), 4);
    }

    #[test]
    fn every_datum_is_an_element_with_its_value_and_text_is_escaped() {
        let mut c = Chart::new("t", "A <title>", "desc & more");
        let s = c.series("web", true);
        c.y = Axis::linear("share (%)", 0.0, 100.0);
        c.marks.push(Mark::Rect {
            series: s,
            x0: 0.0,
            x1: 1.0,
            y0: 0.0,
            y1: 80.0,
            value: 80.0,
            label: "web 80 %".into(),
            inside: None,
        });
        c.marks.push(Mark::Point {
            series: s,
            x: 0.5,
            y: 20.0,
            label: "p".into(),
        });
        let svg = c.render();
        assert_eq!(c.points(), 2);
        assert_eq!(svg.matches(r#"class="point""#).count(), 2);
        assert!(svg.contains(r#"data-y="80""#), "{svg}");
        assert!(svg.contains("A &lt;title&gt;") && svg.contains("desc &amp; more"));
        assert!(svg.contains(r#"role="img""#));
    }
}
