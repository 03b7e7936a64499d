//! The report's page: a summary and one section per chart, rendered through the embedded
//! template `page.html` (minijinja, HTML auto-escaping; the SVG and tables are escaped
//! where they are built).

use super::svg::{Chart, Table};
use minijinja::{context, Environment, Value};

const TEMPLATE: &str = include_str!("page.html");

/// One section: a heading, a sentence, and a chart with its table (or only the sentence).
pub struct Section {
    pub id: &'static str,
    pub heading: String,
    pub intro: String,
    pub chart: Option<(Chart, Table)>,
}

impl Section {
    pub fn chart(
        id: &'static str,
        heading: &str,
        intro: impl Into<String>,
        chart: Chart,
        table: Table,
    ) -> Section {
        Section {
            id,
            heading: heading.to_string(),
            intro: intro.into(),
            chart: Some((chart, table)),
        }
    }

    /// A section without a chart: what is missing and why.
    pub fn note(id: &'static str, heading: &str, intro: impl Into<String>) -> Section {
        Section {
            id,
            heading: heading.to_string(),
            intro: intro.into(),
            chart: None,
        }
    }
}

pub struct Page {
    pub title: String,
    pub subtitle: String,
    /// A line under the title (a run's state).
    pub status: Option<String>,
    pub summary: Vec<(String, String)>,
    pub sections: Vec<Section>,
    /// Reload every this many seconds (`kiln report RUN --watch` while the run goes).
    pub refresh_s: Option<u64>,
}

impl Page {
    pub fn new(title: String, subtitle: String) -> Page {
        Page {
            title,
            subtitle,
            status: None,
            summary: Vec::new(),
            sections: Vec::new(),
            refresh_s: None,
        }
    }

    /// The whole HTML document.
    pub fn render(&self) -> String {
        let mut env = Environment::new();
        env.add_template("page.html", TEMPLATE)
            .expect("the embedded page template parses");
        let sections: Vec<Value> = self
            .sections
            .iter()
            .map(|s| {
                let (svg, table) = match &s.chart {
                    Some((c, t)) => (
                        Some(Value::from_safe_string(c.render())),
                        Some(Value::from_safe_string(t.render())),
                    ),
                    None => (None, None),
                };
                context! {
                    id => s.id,
                    heading => &s.heading,
                    intro => &s.intro,
                    svg => svg,
                    table => table,
                }
            })
            .collect();
        env.get_template("page.html")
            .expect("added above")
            .render(context! {
                title => &self.title,
                subtitle => &self.subtitle,
                status => &self.status,
                summary => &self.summary,
                sections => sections,
                refresh_s => self.refresh_s,
            })
            .expect("the page template renders")
    }
}
