//! `SimHandle`: the cheap, cloneable control of a running simulator for tests (and for the
//! admin routes). It locks the state for each call and never holds the lock across `.await`.
//!
//! Longer than 400 lines on purpose: one small method per control the tests and the demo
//! use (faults, keys, traffic, Xray, listeners), each a few lines around the lock.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::controls::UnknownKey;
use super::faults::{Fault, RequestRecord, Route};
use super::state::{SimKey, State, Switches};
use super::xray::ClientPlacement;
use super::{ApiGeneration, RealityField};

/// What the serving task should do with the listener. `seq` counts the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Link {
    pub down: bool,
    /// Come back up by itself at this instant (admin `down` with `seconds`).
    pub until: Option<Instant>,
    pub seq: u64,
}

/// What the serving task did: the listener is open or closed, as of request `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Served {
    pub open: bool,
    pub seq: u64,
}

#[derive(Debug)]
pub(super) struct Inner {
    state: Mutex<State>,
    generation: ApiGeneration,
    /// Wanted state of the listener, watched by the serving task.
    pub link: watch::Sender<Link>,
    /// State of the listener, reported by the serving task.
    pub served: watch::Sender<Served>,
    /// The VLESS inbounds' TLS listeners.
    pub listeners: super::dataplane::Listeners,
}

/// Control of a running simulated server. Clone it freely: every clone drives the same state.
///
/// The methods that name a key (`set_counter`, `remove_key`, ...) accept its id or uuid and
/// panic when no key matches: in a test that is a bug of the test.
#[derive(Debug, Clone)]
pub struct SimHandle {
    pub(super) inner: Arc<Inner>,
}

fn expect_key<T>(result: Result<T, UnknownKey>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{err}"),
    }
}

impl SimHandle {
    pub(super) fn new(state: State) -> SimHandle {
        let generation = state.generation;
        let dataplane_ip = state.dataplane_ip;
        SimHandle {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                generation,
                link: watch::Sender::new(Link {
                    down: false,
                    until: None,
                    seq: 0,
                }),
                served: watch::Sender::new(Served {
                    open: false,
                    seq: 0,
                }),
                listeners: super::dataplane::Listeners::on(dataplane_ip),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the state usable for the rest.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `f` on the locked state (never across an `.await`).
    pub(super) fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock())
    }

    pub fn generation(&self) -> ApiGeneration {
        self.inner.generation
    }

    /// The key store, with counters and connections.
    pub fn keys(&self) -> Vec<SimKey> {
        self.lock().keys()
    }

    /// Add a key as `POST /api/keys` would (store and config.json).
    ///
    /// # Panics
    /// When the 2.x port range (100 ports) is full.
    pub fn add_key(&self, name: &str) -> SimKey {
        let mut state = self.lock();
        let created_at = state.now().iso;
        let key = state.insert_key(name, created_at, false);
        drop(state);
        key.expect("sim: no free port left for a new key")
    }

    /// Remove a key as `DELETE /api/keys/{id}` would (store and config.json).
    pub fn remove_key(&self, id_or_uuid: &str) {
        let result = self.lock().delete_key(id_or_uuid).map(drop);
        expect_key(result.map_err(|_| UnknownKey(id_or_uuid.to_string())));
    }

    /// Activate or deactivate a key in the store only (config.json follows on the next sync).
    pub fn set_active(&self, id_or_uuid: &str, active: bool) {
        let result = self.lock().set_active(id_or_uuid, active);
        expect_key(result);
    }

    pub fn set_counter(&self, id_or_uuid: &str, bytes: u64) {
        let result = self.lock().set_counter(id_or_uuid, bytes);
        expect_key(result);
    }

    pub fn add_traffic(&self, id_or_uuid: &str, bytes: u64) {
        let result = self.lock().add_traffic(id_or_uuid, bytes);
        expect_key(result);
    }

    pub fn set_connections(&self, id_or_uuid: &str, n: u32) {
        let result = self.lock().set_connections(id_or_uuid, n);
        expect_key(result);
    }

    /// Every key's counter and connections at once: `f(index, counter, connections)`
    /// returns the new pair. For benchmarks with 100 000 keys, where the per-key
    /// controls (which find a key by a scan) would take minutes.
    pub fn set_traffic_all(&self, mut f: impl FnMut(usize, u64, u32) -> (u64, u32)) {
        let mut state = self.lock();
        for (index, record) in state.keys.iter_mut().enumerate() {
            let key = &mut record.key;
            (key.total_bytes, key.connections) = f(index, key.total_bytes, key.connections);
        }
    }

    /// Traffic of a uuid that is no key, seen by the 1.x monitor: adds the bytes, sets the
    /// connections. Listed in the bulk answer while its connections are above 0.
    pub fn add_stranger_traffic(&self, uuid: &str, bytes: u64, connections: u32) {
        self.lock().add_stranger_traffic(uuid, bytes, connections);
    }

    /// Give some keys (deterministically from the seed) traffic and connections.
    pub fn seed_traffic(&self) {
        self.lock().seed_traffic();
    }

    /// Client uuids in config.json, read fresh.
    pub fn config_uuids(&self) -> Vec<String> {
        self.lock().config().client_uuids()
    }

    /// Drift: remove a client from config.json (on 2.x its inbound goes with it).
    pub fn remove_config_client(&self, uuid: &str) {
        self.lock().remove_config_client(uuid);
    }

    /// Drift: add an unknown client to config.json (on 2.x in its own inbound, which a sync
    /// removes).
    pub fn add_config_client(&self, uuid: &str) {
        self.add_config_client_at(uuid, ClientPlacement::OwnInbound);
    }

    /// Drift: add an unknown client where you choose; `InsideExisting` is the 2.x case a sync
    /// leaves in place while answering "synced".
    pub fn add_config_client_at(&self, uuid: &str, placement: ClientPlacement) {
        self.lock().add_config_client(uuid, placement);
    }

    /// Drift (2.x): the inbound of this client gets another short_id. No effect on 1.x.
    pub fn corrupt_short_id(&self, uuid: &str) {
        self.lock().corrupt_short_id(uuid);
    }

    pub fn break_reality(&self, field: RealityField) {
        self.lock().break_reality(field);
    }

    pub fn repair_reality(&self) {
        self.lock().repair_reality();
    }

    pub fn set_max_time_diff(&self, v: u64) {
        self.lock().set_max_time_diff(v);
    }

    pub fn max_time_diff(&self) -> u64 {
        self.lock().reality().max_time_diff
    }

    pub fn switches(&self) -> Switches {
        self.lock().switches
    }

    pub fn set_resets_ignored(&self, on: bool) {
        self.lock().switches.resets_ignored = on;
    }

    pub fn set_sync_noop(&self, on: bool) {
        self.lock().switches.sync_noop = on;
    }

    pub fn set_drift_returns(&self, on: bool) {
        self.lock().switches.drift_returns = on;
    }

    pub fn set_verify_reality_broken(&self, on: bool) {
        self.lock().switches.verify_reality_broken = on;
    }

    pub fn set_precise_monitor_available(&self, on: bool) {
        self.lock().switches.precise_monitor_available = on;
    }

    /// "Restart the API": refresh the 2.x config cache and forget the rate limits.
    pub fn restart_api(&self) {
        self.lock().restart_api();
    }

    /// The next `count` calls of `route` answer with `fault`.
    pub fn fail_next(&self, route: Route, count: usize, fault: Fault) {
        self.lock().faults.arm(route, count, fault);
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Ask the serving task for a state of the listener; returns the request's number.
    fn request_link(&self, down: bool, until: Option<Instant>) -> u64 {
        self.lock().down = down;
        let mut seq = 0;
        self.inner.link.send_modify(|link| {
            link.seq += 1;
            link.down = down;
            link.until = until;
            seq = link.seq;
        });
        seq
    }

    /// Take the server down (requests answer 503 at once, then the listener closes and
    /// connections are refused) or bring it back on the same port. Returns at once; use
    /// [`SimHandle::set_down_and_wait`] to wait until the listener is closed or open again.
    pub fn set_down(&self, down: bool) {
        self.request_link(down, None);
    }

    /// Like [`SimHandle::set_down`], for `duration`, then up again by itself.
    pub fn set_down_for(&self, duration: Duration) {
        self.request_link(true, Some(Instant::now() + duration));
    }

    /// [`SimHandle::set_down`], then wait (at most 5 s) until the serving task has closed
    /// the listener (down) or is accepting again (up).
    pub async fn set_down_and_wait(&self, down: bool) {
        let mut served = self.inner.served.subscribe();
        let seq = self.request_link(down, None);
        let waited =
            tokio::time::timeout(Duration::from_secs(5), served.wait_for(|s| s.seq >= seq)).await;
        if !matches!(waited, Ok(Ok(_))) {
            tracing::warn!(down, "sim: the listener did not change state in time");
        }
    }

    /// Whether the listener is open.
    pub fn is_listening(&self) -> bool {
        self.inner.served.borrow().open
    }

    pub fn set_sync_rate_limit(&self, per_window: u32, window: Duration) {
        self.lock().set_sync_rate_limit(per_window, window);
    }

    pub fn set_keys_rate_limit(&self, per_window: u32, window: Duration) {
        self.lock().set_keys_rate_limit(per_window, window);
    }

    /// Move the simulator's clock forward: rate-limit windows pass without waiting.
    pub fn advance_clock(&self, by: Duration) {
        self.lock().advance_clock(by);
    }

    /// How long a sync or a delete "restarts Xray" before answering (default: 0).
    pub fn set_restart_delay(&self, delay: Duration) {
        self.lock().restart_delay = delay;
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests().to_vec()
    }

    pub fn clear_requests(&self) {
        self.lock().clear_requests();
    }

    /// API requests answered since start, whether the log kept them or not.
    pub fn request_count(&self) -> u64 {
        self.lock().requests_total
    }

    /// Keep at most `limit` records in the request log (0: count only).
    pub fn set_request_log_limit(&self, limit: usize) {
        let mut state = self.lock();
        state.request_log_limit = limit;
        let keep = state.requests.len().min(limit);
        state.requests.truncate(keep);
    }

    /// Answer every API request `latency` later (admin routes stay immediate).
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    pub(super) fn push_request(&self, record: RequestRecord) {
        self.lock().push_request(record);
    }

    /// Syncs that ran (not refused by auth, the rate limit or a fault).
    pub fn sync_count(&self) -> usize {
        self.lock().sync_count
    }

    /// Resets that answered 200 (ignored ones included).
    pub fn reset_count(&self) -> usize {
        self.lock().reset_count
    }

    /// Make the TLS listeners match what Xray serves now (after a restart or a control).
    pub async fn apply_dataplane(&self) {
        let specs = self.lock().listener_specs();
        self.inner.listeners.apply(specs).await;
    }

    /// The test CA (PEM) every inbound's certificate chains to: point `reality_ca_file`
    /// at a file holding it.
    pub fn ca_pem(&self) -> String {
        self.inner.listeners.ca_pem()
    }

    /// The loopback port of the inbound a key's link points at.
    pub fn vless_port(&self, id_or_uuid: &str) -> u16 {
        let tag = {
            let state = self.lock();
            let at = state.find(id_or_uuid);
            let uuid = at.map(|i| state.keys()[i].uuid.clone());
            match uuid {
                Some(uuid) => state.link_tag(&uuid),
                None => panic!("sim: no key has id or uuid {id_or_uuid:?}"),
            }
        };
        self.inner.listeners.port_for(&tag)
    }

    /// Inbounds whose port is listening now, as (tag, port).
    pub fn listening(&self) -> Vec<(String, u16)> {
        self.inner.listeners.listening()
    }

    /// Whether Xray runs (`/health` says "running").
    pub fn xray_running(&self) -> bool {
        self.lock().xray_running()
    }

    /// Xray stops: every VLESS port closes and `/health` says "stopped" until a
    /// sync-config or fix-reality-keys restarts it.
    pub async fn stop_xray(&self) {
        self.lock().stop_xray();
        self.apply_dataplane().await;
    }

    /// Xray starts again (as a restart on the server would).
    pub async fn start_xray(&self) {
        self.lock().restart_xray();
        self.apply_dataplane().await;
    }

    /// Close (or open again) the port of one key's inbound (a firewall rule).
    pub async fn set_port_closed(&self, id_or_uuid: &str, closed: bool) {
        let uuid = self.uuid_of(id_or_uuid);
        self.lock().set_port_closed(&uuid, closed);
        self.apply_dataplane().await;
    }

    /// Make one key's inbound present a certificate for another name (or the right one
    /// again).
    pub async fn set_wrong_certificate(&self, id_or_uuid: &str, wrong: bool) {
        let uuid = self.uuid_of(id_or_uuid);
        self.lock().set_wrong_certificate(&uuid, wrong);
        self.apply_dataplane().await;
    }

    /// Set the Reality `dest` of one key's inbound behind the API's back ("" empties it).
    pub fn set_inbound_dest(&self, id_or_uuid: &str, dest: &str) {
        let uuid = self.uuid_of(id_or_uuid);
        self.lock()
            .config
            .edit_reality(Some(&uuid), |inbound| inbound.dest = dest.to_string());
    }

    /// The inbounds' Reality settings as (tag, dest, server names, short ids).
    pub fn inbound_reality(&self) -> Vec<(String, String, Vec<String>, Vec<String>)> {
        self.lock()
            .config()
            .inbounds()
            .iter()
            .map(|i| {
                (
                    i.tag.clone(),
                    i.dest.clone(),
                    i.server_names.clone(),
                    i.short_ids.clone(),
                )
            })
            .collect()
    }

    /// Name another host in the keys' links (the listeners stay on 127.0.0.1), as a
    /// server whose public address keywarden cannot reach would.
    pub fn set_link_host(&self, host: &str) {
        self.lock().dataplane.link_host = Some(host.to_string());
    }

    /// An Xray restart (sync, fix-reality-keys) zeroes every key's counter.
    pub fn set_restart_zeroes_counters(&self, on: bool) {
        self.lock().switches.restart_zeroes_counters = on;
    }

    /// fix-reality-keys calls that ran.
    pub fn fix_count(&self) -> usize {
        self.lock().fix_count
    }

    fn uuid_of(&self, id_or_uuid: &str) -> String {
        let state = self.lock();
        match state.find(id_or_uuid) {
            Some(at) => state.keys()[at].uuid.clone(),
            None => panic!("sim: no key has id or uuid {id_or_uuid:?}"),
        }
    }
}
