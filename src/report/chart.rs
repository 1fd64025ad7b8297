//! The report's PNG charts, drawn in-process with plotters' bitmap backend. Text is set
//! in DejaVu Sans, bundled into the binary (assets/fonts, Bitstream Vera licence), so a
//! bare server without fontconfig or any font renders the same picture.

use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::model::Report;

/// Chart size in pixels.
pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 440;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// One rendered chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// File name and Content-ID, e.g. `traffic.png`.
    pub name: &'static str,
    pub title: String,
    pub png: Vec<u8>,
}

impl Chart {
    pub const MIME_TYPE: &'static str = "image/png";
}

/// Drawing or encoding failed (a bug or an impossible size, never bad data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot draw the {chart} chart: {reason}")]
pub struct ChartError {
    pub chart: &'static str,
    pub reason: String,
}

fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font(FAMILY, FontStyle::Normal, FONT)
                .map_err(|_| "the bundled font is unreadable".to_string())
        })
        .clone()
}

/// Both charts: daily traffic per server, and availability per server and series.
pub fn all(report: &Report) -> Result<Vec<Chart>, ChartError> {
    Ok(vec![traffic(report)?, availability(report)?])
}

/// (divisor, unit) that keeps the largest value readable.
fn unit_for(max: u64) -> (f64, &'static str) {
    const KIB: f64 = 1024.0;
    match max as f64 {
        m if m >= KIB.powi(4) => (KIB.powi(4), "TiB"),
        m if m >= KIB.powi(3) => (KIB.powi(3), "GiB"),
        m if m >= KIB.powi(2) => (KIB.powi(2), "MiB"),
        _ => (KIB, "KiB"),
    }
}

/// A series to draw: label and (day index, value) points.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
}

struct Frame<'a> {
    name: &'static str,
    title: String,
    y_desc: String,
    y_max: f64,
    days: Vec<String>,
    lines: &'a [Line],
}

/// Daily traffic of each server in the period.
pub fn traffic(report: &Report) -> Result<Chart, ChartError> {
    let servers = &report.traffic.servers;
    let max = servers
        .iter()
        .flat_map(|s| s.daily.iter().map(|d| d.bytes))
        .max()
        .unwrap_or(0);
    let (divisor, unit) = unit_for(max);
    let lines: Vec<Line> = servers
        .iter()
        .map(|s| Line {
            label: s.server.clone(),
            points: s
                .daily
                .iter()
                .enumerate()
                .map(|(i, d)| (i as f64, d.bytes as f64 / divisor))
                .collect(),
        })
        .collect();
    let y_max = (max as f64 / divisor * 1.15).max(1.0);
    draw(Frame {
        name: "traffic.png",
        title: format!("Daily traffic per server, {}", report.period.title),
        y_desc: unit.to_string(),
        y_max,
        days: day_labels(report),
        lines: &lines,
    })
}

/// Share of checks that found each server (and each series) up, per day.
pub fn availability(report: &Report) -> Result<Chart, ChartError> {
    let lines: Vec<Line> = report
        .availability
        .iter()
        .map(|a| Line {
            label: format!("{} {}", a.server, a.title),
            points: a
                .daily
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.percent.map(|p| (i as f64, p)))
                .collect(),
        })
        .collect();
    draw(Frame {
        name: "availability.png",
        title: format!("Availability per day, {}", report.period.title),
        y_desc: "% of checks up".to_string(),
        y_max: 105.0,
        days: day_labels(report),
        lines: &lines,
    })
}

fn day_labels(report: &Report) -> Vec<String> {
    report
        .period
        .days()
        .iter()
        .map(|d| d.format("%a %-d").to_string())
        .collect()
}

fn draw(frame: Frame<'_>) -> Result<Chart, ChartError> {
    let name = frame.name;
    let fail = |reason: String| ChartError {
        chart: name,
        reason,
    };
    register().map_err(fail)?;
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    plot(&mut rgb, &frame).map_err(fail)?;
    let png = encode(&rgb).map_err(|e| fail(e.to_string()))?;
    Ok(Chart {
        name,
        title: frame.title,
        png,
    })
}

fn plot(rgb: &mut [u8], frame: &Frame<'_>) -> Result<(), String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| text(&e))?;
    let last = frame.days.len().saturating_sub(1).max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(&frame.title, (FAMILY, 22))
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.3..last + 0.3, 0.0..frame.y_max)
        .map_err(|e| text(&e))?;
    let days = frame.days.clone();
    chart
        .configure_mesh()
        .x_labels(frame.days.len().min(16))
        .x_label_formatter(&|x| {
            let index = x.round();
            match ((x - index).abs() < 0.01, days.get(index as usize)) {
                (true, Some(label)) if index >= 0.0 => label.clone(),
                _ => String::new(),
            }
        })
        .y_desc(frame.y_desc.as_str())
        .label_style((FAMILY, 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| text(&e))?;
    for (index, line) in frame.lines.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(3),
            ))
            .map_err(|e| text(&e))?
            .label(line.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|p| Circle::new(*p, 4, color.filled())),
            )
            .map_err(|e| text(&e))?;
    }
    if frame.lines.is_empty() {
        root.draw(&Text::new(
            "no data recorded in this period",
            ((WIDTH / 2 - 140) as i32, (HEIGHT / 2) as i32),
            (FAMILY, 20),
        ))
        .map_err(|e| text(&e))?;
    } else {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(|e| text(&e))?;
    }
    root.present().map_err(|e| text(&e))?;
    Ok(())
}

fn encode(rgb: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgb)?;
    }
    Ok(out)
}
