//! `keywarden probe`: read-only diagnostics of each configured server.

use std::path::Path;

pub async fn run(_path: &Path, _server: Option<&str>, _json: bool) -> anyhow::Result<u8> {
    anyhow::bail!("probe: not implemented yet")
}
