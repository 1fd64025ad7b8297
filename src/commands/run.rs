//! `keywarden run`: the daemon.

use std::path::Path;

pub async fn run(_path: &Path) -> anyhow::Result<u8> {
    anyhow::bail!("run: the scheduler is being wired")
}
