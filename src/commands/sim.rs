//! `keywarden sim`: run the simulated VPN Key Management API standalone.

use std::net::SocketAddr;

use crate::cli::ApiGenerationArg;

pub async fn run(
    _listen: SocketAddr,
    _api: ApiGenerationArg,
    _keys: usize,
    _api_key: String,
) -> anyhow::Result<u8> {
    anyhow::bail!("sim: not implemented yet")
}
