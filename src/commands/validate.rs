//! `keywarden validate`: load and check the configuration, print a summary or every problem.

use std::path::Path;

pub fn run(_path: &Path) -> anyhow::Result<u8> {
    anyhow::bail!("validate: not implemented yet")
}
