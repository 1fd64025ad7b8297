//! `keywarden validate`: load and check the configuration, print a summary (exit 0) or
//! every problem (exit 2). Checks what `run` needs: secrets from files and the environment.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::{EXIT_OK, EXIT_PROBLEMS};
use crate::config::{self, ConfigErrors, summary};
use crate::terminal;

pub fn run(path: &Path) -> anyhow::Result<u8> {
    match config::load(path) {
        Ok(loaded) => {
            let mut stderr = std::io::stderr().lock();
            for warning in &loaded.warnings {
                let warning = terminal::escape(warning);
                writeln!(stderr, "warning: {warning}").context("writing warnings")?;
            }
            let text = summary::render(&loaded.config, path, chrono::Utc::now());
            // Not print!: `validate | head` must stop quietly on a closed pipe.
            crate::output::print(&terminal::escape_lines(&text)).context("writing the summary")?;
            Ok(EXIT_OK)
        }
        Err(errors) => {
            std::io::stderr()
                .lock()
                .write_all(problem_report(&errors, path).as_bytes())
                .context("writing the problems")?;
            Ok(EXIT_PROBLEMS)
        }
    }
}

/// Every problem, one per line, then how many there were.
pub(crate) fn problem_report(errors: &ConfigErrors, path: &Path) -> String {
    let count = errors.problems.len();
    let plural = if count == 1 { "" } else { "s" };
    // Values quoted from the file may hold control characters: shown escaped.
    let errors = terminal::escape_lines(&errors.to_string());
    format!("{errors}\n{count} problem{plural} in {}\n", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_problems_then_counts_them() {
        let path = Path::new("/etc/keywarden/agent.toml");
        let errors = config::from_str_with_env("[agent]\ndry_run = 1\n", path, &|_: &str| None)
            .expect_err("wrong type");
        let report = problem_report(&errors, path);
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines.len(), 2, "{report}");
        assert!(
            lines[0].starts_with("/etc/keywarden/agent.toml:2:11: agent.dry_run: invalid type")
        );
        assert_eq!(lines[1], "1 problem in /etc/keywarden/agent.toml");
    }
}
