//! `keywarden report`: the usage report of a period, now, from the state store (it never
//! calls a server). Without `--send` it writes report.html, report.txt, report.json and
//! the PNG charts to `--out` (default: a new temporary directory) and prints the paths,
//! so an operator can look first; with `--send` it also sends it to `[reports].sinks`.

use std::path::{Path, PathBuf};

use chrono::Utc;

use super::{EXIT_OK, EXIT_PROBLEMS};
use crate::alert::Sink;
use crate::report::deliver::{DeliveryOptions, deliver};
use crate::report::{PeriodSpec, ReportPeriod};

/// What `report` was asked for.
#[derive(Debug, Clone)]
pub struct ReportArgs {
    /// `None`: `[reports].period`.
    pub period: Option<PeriodSpec>,
    pub send: bool,
    pub out: Option<PathBuf>,
}

pub async fn run(path: &Path, args: &ReportArgs) -> anyhow::Result<u8> {
    let config = match crate::app::load_config(path) {
        Ok(loaded) => loaded.config,
        Err(report) => {
            eprint!("{report}");
            return Ok(EXIT_PROBLEMS);
        }
    };
    if args.send && config.reports.sinks.is_empty() {
        eprintln!(
            "keywarden report --send: no sinks to send to; list them in [reports].sinks (e.g. sinks = [\"ops-mail\"])"
        );
        return Ok(EXIT_PROBLEMS);
    }
    let tz = config.agent.timezone;
    let now = Utc::now();
    let spec = args
        .period
        .unwrap_or(PeriodSpec::from(config.reports.period));
    let period = ReportPeriod::resolve(spec, tz, now);
    let store = crate::app::open_store(&config)?;
    let report = crate::report::gather(&store, &config, &period, now)?;
    let rendered = crate::report::render(report, tz)?;
    if !args.send || args.out.is_some() {
        let dir = match &args.out {
            Some(dir) => dir.clone(),
            None => tempfile::Builder::new()
                .prefix("keywarden-report-")
                .tempdir()?
                .keep(),
        };
        crate::outln!("report of {} written to {}:", period.title, dir.display())?;
        for file in rendered.write_to(&dir)? {
            crate::outln!("  {}", file.display())?;
        }
    }
    if !args.send {
        return Ok(EXIT_OK);
    }
    let sinks = Sink::build_all(&config.alerts, tz, &Default::default())?;
    let deliveries = deliver(
        &rendered,
        &sinks,
        &config.reports.sinks,
        &DeliveryOptions::default(),
        now,
    )
    .await;
    let mut all = true;
    for delivery in deliveries {
        match delivery.result {
            Ok(()) => crate::outln!("{}: delivered", delivery.sink)?,
            Err(error) => {
                all = false;
                crate::outln!(
                    "{}: {}",
                    delivery.sink,
                    crate::terminal::escape(&error.to_string())
                )?;
            }
        }
    }
    Ok(if all { EXIT_OK } else { EXIT_PROBLEMS })
}
