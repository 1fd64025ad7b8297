//! The usage report: per period, traffic per server (total, per day, change against the
//! previous period), the top keys with their quota use, keys near or over quota, what
//! keywarden did and which findings were raised and resolved, and availability; with PNG
//! charts. `gather` reads the store once; everything after it is pure until `deliver`
//! sends the result to sinks. It never calls a VPN server.

pub mod chart;
pub mod deliver;
pub mod gather;
pub mod job;
pub mod model;
pub mod period;
pub mod render;

use std::path::{Path, PathBuf};

use chrono_tz::Tz;

pub use chart::{Chart, ChartError};
pub use gather::gather;
pub use model::Report;
pub use period::{PeriodSpec, ReportPeriod};

/// A report with its text, HTML and charts, ready to write or send.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub report: Report,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub charts: Vec<Chart>,
}

/// Render `report` (times in `tz`).
pub fn render(report: Report, tz: Tz) -> Result<Rendered, ChartError> {
    let charts = chart::all(&report)?;
    Ok(Rendered {
        subject: render::subject(&report),
        text: render::text(&report, tz),
        html: render::html(&report, tz, &charts),
        charts,
        report,
    })
}

impl Rendered {
    /// Write report.html, report.txt, report.json and the PNGs into `dir` (created if
    /// missing); returns the paths written.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_vec_pretty(&self.report).map_err(std::io::Error::other)?;
        let mut files: Vec<(String, &[u8])> = vec![
            ("report.html".into(), self.html.as_bytes()),
            ("report.txt".into(), self.text.as_bytes()),
            ("report.json".into(), &json),
        ];
        for chart in &self.charts {
            files.push((chart.name.to_string(), &chart.png));
        }
        let mut written = Vec::new();
        for (name, bytes) in files {
            let path = dir.join(name);
            std::fs::write(&path, bytes)?;
            written.push(path);
        }
        Ok(written)
    }
}
