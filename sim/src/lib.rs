//! The simulated VPN Key Management API (axum), for tests, `keywarden sim` and the demo.
//! It owns a stateful fake server; it must never talk to a real server or touch files.
//!
//! Each VLESS inbound of config.json is a real TLS listener on 127.0.0.1 while Xray runs
//! (`dataplane.rs`), and the keys' links point at it.
//!
//! Both API generations are simulated with the behaviour recorded from the real servers
//! (`tests/fixtures/api-samples/`, `api-reference.md`): a key store and a separate list of
//! Xray clients (drift = they differ), Reality settings, per-key counters, the 2.x stale
//! `config-status` cache, rate limits, and the known quirks. Faults (error pages, truncated
//! JSON, delays, oversized bodies, a server that is down) are injected on demand.
//!
//! Tests drive the simulator through a [`SimHandle`]. The standalone `keywarden sim` is driven
//! through admin routes below `/_sim/`, which require the same `X-API-Key`, are never logged,
//! never faulted and still answer while the API is "down" (until the listener is closed):
//!
//! | method, path | body (JSON) | effect |
//! |---|---|---|
//! | GET `/_sim/state` | | keys, config clients, switches, Reality, counters |
//! | POST `/_sim/keys` | `{"name"}` | add a key (store + config) |
//! | DELETE `/_sim/keys/{id}` | | remove a key (store + config) |
//! | POST `/_sim/keys/{id}` | `{"active"?, "counter"?, "add_bytes"?, "connections"?}` | change a key |
//! | POST `/_sim/strangers` | `{"uuid", "bytes", "connections"}` | traffic of a uuid that is no key (1.x bulk) |
//! | POST `/_sim/drift` | `{"remove"?: [uuid], "add"?: [uuid], "add_inside"?: [uuid], "corrupt_short_id"?: [uuid]}` | change config.json behind the API's back |
//! | GET, POST `/_sim/reality` | `{"break"?: "dest"\|"server_names"\|"private_key"\|"short_ids", "repair"?: true, "max_time_diff"?: n}` | Reality settings |
//! | POST `/_sim/switches` | `{"resets_ignored"?, "sync_noop"?, "drift_returns"?, "verify_reality_broken"?, "precise_monitor_available"?, "restart_zeroes_counters"?}` | behaviour switches; answers all of them (`verify_reality_broken` is also the 2.x layout with the API inbound: `api_inbound` in `xray/config-status`) |
//! | POST `/_sim/xray` | `{"stopped"?: bool, "close_port"?: key, "open_port"?: key, "wrong_certificate"?: key, "right_certificate"?: key, "dest"?: {"key", "dest"}}` | the data plane: stop Xray (every VLESS port closes, `/health` says stopped, a sync or fix-reality-keys starts it), close one key's port, make it present a certificate for another name, set an inbound's Reality `dest` ("" empties it) |
//! | GET `/_sim/ca` | | the test CA (PEM) every inbound's TLS certificate chains to |
//! | POST `/_sim/restart` | | "restart the API": refresh the 2.x config cache, reset rate limits |
//! | POST, DELETE `/_sim/faults` | `{"route": "sync_config", "count": 1, "fault": {"kind": "status", "status": 500, "detail": ".."}}` | arm (or clear) faults; kinds: `status`, `html` (`status`), `truncated_json`, `delay` (`ms`), `oversized` (`bytes`), `rate_limited` (`retry_after`?) |
//! | POST `/_sim/down` | `{"seconds"}` | close the listener for that long (connections refused), then listen again |
//! | POST `/_sim/rate-limits` | `{"sync"?: {"per_window", "window_secs"}, "keys"?: {..}}` | 2.x rate-limit windows |
//! | POST `/_sim/clock` | `{"advance_secs"}` | move the simulator's clock forward |
//! | GET, DELETE `/_sim/requests` | | the request log (method, path, status, whether a key was sent) |
//! | POST `/_sim/delay` | `{"restart_ms"}` | how long a sync or delete "restarts Xray" |

mod admin;
mod controls;
mod dataplane;
mod faults;
mod handle;
mod ratelimit;
mod routes;
mod routes_v1;
mod routes_v2;
mod server;
mod state;
mod sync;
mod tls;
mod traffic;
mod wire;
mod xray;

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use dataplane::{DataplaneControls, WRONG_NAME};
pub use faults::{Fault, RequestRecord, Route};
pub use handle::SimHandle;
pub use server::SimServer;
pub use state::{SimKey, Switches};
pub use tls::TestCa;
pub use xray::ClientPlacement;

/// Which generation of the API the simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiGeneration {
    /// 1.x servers: keys.json, bulk traffic endpoints, no rate limits.
    V1,
    /// 2.x servers: SQLite store, per-key traffic, validate-sync, rate limits.
    V2,
}

impl ApiGeneration {
    /// The version string the API reports.
    pub fn version(self) -> &'static str {
        match self {
            ApiGeneration::V1 => "1.0.0",
            ApiGeneration::V2 => "2.3.6",
        }
    }
}

/// How to build a simulated server.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// API generation to simulate.
    pub generation: ApiGeneration,
    /// Number of keys created at start ("Alice iPhone", "Bob laptop", "key-003", ...).
    pub keys: usize,
    /// The API key expected in `X-API-Key`.
    pub api_key: String,
    /// Seed of every generated id, uuid, short_id and figure: same seed, same server.
    pub seed: u64,
}

impl SimOptions {
    /// Options with the default seed.
    pub fn new(generation: ApiGeneration, keys: usize, api_key: impl Into<String>) -> Self {
        SimOptions {
            generation,
            keys,
            api_key: api_key.into(),
            seed: 42,
        }
    }
}

/// A required field of Xray's `realitySettings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RealityField {
    Dest,
    ServerNames,
    PrivateKey,
    ShortIds,
}

impl RealityField {
    /// The field's name in config.json.
    pub fn json_name(self) -> &'static str {
        match self {
            RealityField::Dest => "dest",
            RealityField::ServerNames => "serverNames",
            RealityField::PrivateKey => "privateKey",
            RealityField::ShortIds => "shortIds",
        }
    }
}

/// Where the server is listening, as a base URL of the API.
fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}/api")
}

/// Default for how long a sync "restarts Xray" in tests: not at all.
const DEFAULT_RESTART_DELAY: Duration = Duration::ZERO;
