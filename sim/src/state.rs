//! The simulated server's state and the API's key and traffic behaviour on it. Pure code:
//! no HTTP, no sleeping; the clock comes in as a [`Now`]. Sync and config checks live in
//! `sync.rs`, the test controls in `controls.rs`.
//!
//! Longer than 400 lines on purpose: the key store, the counters and the API's rules on
//! them are one state whose invariants (a key in the store and in config.json, unique
//! ports and ids) are kept in one place.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::faults::{FaultQueue, RequestRecord};
use super::ratelimit::RateLimit;
use super::xray::{DriftOp, Expected, XrayConfig};
use super::{ApiGeneration, RealityField, SimOptions};

/// A key of the simulated store, with the figures the simulator holds for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimKey {
    pub id: String,
    pub uuid: String,
    pub name: String,
    pub is_active: bool,
    /// ISO 8601 without zone, microseconds, like the real servers.
    pub created_at: String,
    /// 2.x only.
    pub port: Option<u16>,
    /// 2.x only (8 hex characters).
    pub short_id: Option<String>,
    /// The traffic counter (1.x estimate, 2.x cumulative total).
    pub total_bytes: u64,
    /// Open connections (1.x monitor).
    pub connections: u32,
}

/// A stored key and its 2.x traffic-history row.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub key: SimKey,
    /// 2.x: a history row exists (created by a traffic read, deleted by a reset).
    pub history: bool,
}

/// A uuid that is no key but shows up in the 1.x monitor (Xray's access log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stranger {
    pub uuid: String,
    pub bytes: u64,
    pub connections: u32,
}

/// Behaviour switches, all settable at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Switches {
    /// Resets answer 200 and change nothing.
    pub resets_ignored: bool,
    /// Sync answers as usual but does not touch config.json.
    pub sync_noop: bool,
    /// After every sync, the injected drift is written back (something else rewrites the file).
    pub drift_returns: bool,
    /// verify-reality answers 500 whatever the settings (the real 2.x layout).
    pub verify_reality_broken: bool,
    /// 1.x `traffic/status` field.
    pub precise_monitor_available: bool,
    /// An Xray restart (sync, fix-reality-keys) zeroes every key's counter, as Xray's
    /// in-memory stats do.
    pub restart_zeroes_counters: bool,
}

/// Reality settings of the (first VLESS) inbound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reality {
    pub missing: BTreeSet<RealityField>,
    pub max_time_diff: u64,
}

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// FastAPI's `{"detail": "..."}` with this status.
    Detail { status: u16, detail: String },
    /// 2.x slowapi 429: `{"error": "..."}`, no Retry-After.
    RateLimited(String),
    /// FastAPI's 422 `{"detail": [...]}`.
    Validation(serde_json::Value),
}

impl ApiError {
    pub fn detail(status: u16, detail: &str) -> Self {
        ApiError::Detail {
            status,
            detail: detail.to_string(),
        }
    }

    pub fn key_not_found() -> Self {
        ApiError::detail(404, "Key not found")
    }
}

/// The simulator's idea of "now": a monotonic instant (rate limits, uptime) and the wall
/// clock in the two forms the API prints. Both move with the simulated clock offset.
#[derive(Debug, Clone)]
pub struct Now {
    pub instant: Instant,
    pub unix: i64,
    pub iso: String,
}

/// Everything the simulated server knows.
#[derive(Debug)]
pub struct State {
    pub generation: ApiGeneration,
    pub(super) api_key: String,
    pub(super) rng: fastrand::Rng,
    pub(super) keys: Vec<KeyRecord>,
    pub(super) config: XrayConfig,
    /// 2.x: what `config-status` believes config.json holds (`None` = not read yet).
    pub(super) config_cache: Option<Vec<String>>,
    pub(super) reality: Reality,
    pub(super) strangers: Vec<Stranger>,
    pub switches: Switches,
    /// Drift injected since the last effective sync, written back when `drift_returns`.
    pub(super) drift_log: Vec<DriftOp>,
    pub(super) sync_limit: RateLimit,
    pub(super) keys_limit: RateLimit,
    pub faults: FaultQueue,
    pub(super) requests: Vec<RequestRecord>,
    /// Requests answered since start (the log above may keep fewer).
    pub(super) requests_total: u64,
    /// The most records the request log keeps (later ones are only counted): a long
    /// soak must not grow the log without bound.
    pub(super) request_log_limit: usize,
    /// Added to every API request before it is answered (a far-away server).
    pub latency: Duration,
    /// Where the VLESS listeners bind (and the keys' links point, unless told otherwise).
    pub(super) dataplane_ip: std::net::Ipv4Addr,
    pub sync_count: usize,
    pub reset_count: usize,
    /// fix-reality-keys calls that ran.
    pub fix_count: usize,
    /// How long a sync or a delete "restarts Xray".
    pub restart_delay: Duration,
    pub(super) clock_offset: Duration,
    pub(super) started: Instant,
    /// Answer 503 to every API request (the listener is being closed).
    pub down: bool,
    /// Reality public key printed in client configs.
    pub(super) public_key: String,
    /// Xray stopped, ports closed, wrong certificates (`dataplane.rs`).
    pub(super) dataplane: super::dataplane::DataplaneControls,
}

/// 2.x port range.
pub const FIRST_PORT: u16 = 10001;
pub const MAX_PORTS: u16 = 100;

const NAMES: [&str; 2] = ["Alice iPhone", "Bob laptop"];

/// A random version-4 uuid from the seeded generator.
pub fn uuid4(rng: &mut fastrand::Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// 8 hex characters, like the 2.x short_ids.
pub fn short_id(rng: &mut fastrand::Rng) -> String {
    format!("{:08x}", rng.u32(..))
}

/// The created_at of the i-th seeded key: some days apart from 2025-08-02, with microseconds.
fn seeded_created_at(rng: &mut fastrand::Rng, i: usize) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(2025, 8, 2)
        .and_then(|d| d.and_hms_micro_opt(15, 22, 39, rng.u32(..1_000_000)))
        .unwrap_or_default();
    let at = base + chrono::TimeDelta::hours(i as i64 * 17 + i64::from(rng.u8(..24)));
    at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// The default name of the i-th key.
pub fn key_name(i: usize) -> String {
    match NAMES.get(i) {
        Some(name) => name.to_string(),
        None => format!("key-{:03}", i + 1),
    }
}

impl State {
    pub fn new(options: &SimOptions) -> State {
        let mut rng = fastrand::Rng::with_seed(options.seed);
        let generation = options.generation;
        let public_key: String = (0..43)
            .map(|_| rng.alphanumeric())
            .collect::<String>()
            .replace('q', "_");
        let shared_short_id = format!("{:016x}", rng.u64(..));
        let mut state = State {
            generation,
            api_key: options.api_key.clone(),
            config: XrayConfig::new(generation, &shared_short_id),
            rng,
            keys: Vec::new(),
            config_cache: None,
            reality: Reality {
                missing: BTreeSet::new(),
                max_time_diff: 600,
            },
            strangers: Vec::new(),
            switches: Switches {
                resets_ignored: false,
                sync_noop: false,
                drift_returns: false,
                verify_reality_broken: generation == ApiGeneration::V2,
                precise_monitor_available: true,
                restart_zeroes_counters: false,
            },
            drift_log: Vec::new(),
            sync_limit: RateLimit::new(3, Duration::from_secs(60)),
            keys_limit: RateLimit::new(30, Duration::from_secs(60)),
            faults: FaultQueue::default(),
            requests: Vec::new(),
            requests_total: 0,
            request_log_limit: usize::MAX,
            latency: options.latency,
            dataplane_ip: options.dataplane_ip,
            sync_count: 0,
            reset_count: 0,
            fix_count: 0,
            restart_delay: super::DEFAULT_RESTART_DELAY,
            clock_offset: Duration::ZERO,
            started: Instant::now(),
            down: false,
            public_key,
            dataplane: Default::default(),
        };
        // On 2.x, keys beyond the 100 ports of the range are not created.
        for i in 0..options.keys {
            let created_at = seeded_created_at(&mut state.rng, i);
            // Seeded keys are old: the server has read their traffic before.
            state.insert_key(&key_name(i), created_at, true);
        }
        state
    }

    /// The simulated clock.
    pub fn now(&self) -> Now {
        let offset = chrono::TimeDelta::from_std(self.clock_offset).unwrap_or_default();
        let utc = chrono::Utc::now() + offset;
        Now {
            instant: Instant::now() + self.clock_offset,
            unix: utc.timestamp(),
            // The servers print local time without a zone.
            iso: utc
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%dT%H:%M:%S%.6f")
                .to_string(),
        }
    }

    /// Whether a presented `X-API-Key` is the right one.
    pub fn authorized(&self, presented: Option<&[u8]>) -> bool {
        presented == Some(self.api_key.as_bytes())
    }

    /// Index of the key with this id or uuid.
    pub fn find(&self, id_or_uuid: &str) -> Option<usize> {
        self.keys
            .iter()
            .position(|r| r.key.id == id_or_uuid || r.key.uuid == id_or_uuid)
    }

    /// Index of the key with this id (2.x traffic endpoints ignore uuids).
    pub fn find_by_id(&self, id: &str) -> Option<usize> {
        self.keys.iter().position(|r| r.key.id == id)
    }

    pub fn keys(&self) -> Vec<SimKey> {
        self.keys.iter().map(|r| r.key.clone()).collect()
    }

    /// What a sync writes: the active keys.
    pub(super) fn expected(&self) -> Vec<Expected<'_>> {
        self.keys
            .iter()
            .filter(|r| r.key.is_active)
            .map(|r| Expected {
                uuid: &r.key.uuid,
                port: r.key.port,
                short_id: r.key.short_id.as_deref(),
            })
            .collect()
    }

    /// The uuids config.json should hold: the active keys', in store order.
    pub fn expected_uuids(&self) -> Vec<String> {
        self.expected().iter().map(|e| e.uuid.to_string()).collect()
    }

    /// Add a key to the store and to config.json (what `POST /api/keys` does).
    pub fn insert_key(&mut self, name: &str, created_at: String, history: bool) -> Option<SimKey> {
        let (port, short_id) = match self.generation {
            ApiGeneration::V1 => (None, None),
            ApiGeneration::V2 => {
                let port = (FIRST_PORT..FIRST_PORT + MAX_PORTS)
                    .find(|p| !self.keys.iter().any(|r| r.key.port == Some(*p)))?;
                (Some(port), Some(short_id(&mut self.rng)))
            }
        };
        let key = SimKey {
            id: uuid4(&mut self.rng),
            uuid: uuid4(&mut self.rng),
            name: name.to_string(),
            is_active: true,
            created_at,
            port,
            short_id,
            total_bytes: 0,
            connections: 0,
        };
        self.config.add_key(Expected {
            uuid: &key.uuid,
            port: key.port,
            short_id: key.short_id.as_deref(),
        });
        self.keys.push(KeyRecord {
            key: key.clone(),
            history,
        });
        Some(key)
    }

    /// Remove a key from the store and config.json (what `DELETE /api/keys/{id}` does).
    pub fn delete_key(&mut self, id_or_uuid: &str) -> Result<SimKey, ApiError> {
        let at = self.find(id_or_uuid).ok_or_else(ApiError::key_not_found)?;
        let record = self.keys.remove(at);
        self.config.remove_key(&record.key.uuid);
        Ok(record.key)
    }

    /// Count a `GET /api/keys` against the 2.x limit.
    pub fn hit_keys_limit(&mut self, now: &Now) -> Result<(), ApiError> {
        if self.generation == ApiGeneration::V2 {
            self.keys_limit
                .hit(now.instant)
                .map_err(ApiError::RateLimited)?;
        }
        Ok(())
    }

    /// 2.x reset: only by id; needs a history row (a traffic read since the last reset).
    pub fn reset_v2(&mut self, id: &str) -> Result<SimKey, ApiError> {
        let at = self.find_by_id(id).ok_or_else(ApiError::key_not_found)?;
        let ignored = self.switches.resets_ignored;
        let record = &mut self.keys[at];
        if !record.history {
            return Err(ApiError::detail(
                404,
                "Traffic history not found for this key",
            ));
        }
        record.history = false;
        if !ignored {
            record.key.total_bytes = 0;
        }
        self.reset_count += 1;
        Ok(record.key.clone())
    }

    /// 2.x traffic read: only by id; (re)creates the history row.
    pub fn read_traffic_v2(&mut self, id: &str) -> Result<SimKey, ApiError> {
        let at = self.find_by_id(id).ok_or_else(ApiError::key_not_found)?;
        self.keys[at].history = true;
        Ok(self.keys[at].key.clone())
    }

    /// 1.x reset: by id or uuid, active keys only.
    pub fn reset_v1(&mut self, id_or_uuid: &str) -> Result<SimKey, ApiError> {
        let key = self.active_key(id_or_uuid)?;
        if !self.switches.resets_ignored
            && let Some(at) = self.find(id_or_uuid)
        {
            self.keys[at].key.total_bytes = 0;
        }
        self.reset_count += 1;
        Ok(key)
    }

    /// A key by id or uuid that must be active (1.x traffic endpoints).
    pub fn active_key(&self, id_or_uuid: &str) -> Result<SimKey, ApiError> {
        let at = self.find(id_or_uuid).ok_or_else(ApiError::key_not_found)?;
        let key = &self.keys[at].key;
        if !key.is_active {
            return Err(ApiError::detail(400, "Key is not active"));
        }
        Ok(key.clone())
    }

    /// Connections the 1.x monitor sees in total (active keys and strangers).
    pub fn total_connections(&self) -> u32 {
        let keys: u32 = self
            .keys
            .iter()
            .filter(|r| r.key.is_active)
            .map(|r| r.key.connections)
            .sum();
        keys + self.strangers.iter().map(|s| s.connections).sum::<u32>()
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    pub fn config(&self) -> &XrayConfig {
        &self.config
    }

    pub fn reality(&self) -> &Reality {
        &self.reality
    }

    pub fn strangers(&self) -> &[Stranger] {
        &self.strangers
    }
}
