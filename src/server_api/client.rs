//! `ServerApi`: the typed client of one server. It holds a clone of the shared HTTP
//! client (see `pool.rs`), the key-list and API-status caches shared by every caller,
//! capability detection, the per-server concurrency cap and the id/uuid fallback of
//! per-key calls.
//!
//! Longer than 400 lines on purpose: every endpoint's call is here (and its tests at the
//! bottom), sharing the key-list cache, the capability probe and the id/uuid fallback.

use std::collections::HashSet;
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::{Duration, Instant};

use reqwest::{Method, Url};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use super::error::{ApiError, ApiErrorKind, ApiResult};
use super::http::{self, Answer, Exchange, RetryPolicy};
use super::model::*;
use super::pool::HttpClients;
use super::typed;
use super::wire::{self, DecodeError};
use super::xray::{self, Health, KeyConfig, RealityFix, XrayInbound, XrayLayout};
use crate::redact::Redactor;
use crate::secret::Secret;

/// Everything a client needs to know about its server.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The server's name in the config, for logs and errors.
    pub name: String,
    /// Base URL ending in `/api`.
    pub base_url: Url,
    pub api_key: Secret,
    /// Timeout of reads.
    pub timeout: Duration,
    /// Timeout of sync, delete and reset (a sync restarts Xray).
    pub action_timeout: Duration,
    /// Requests in flight to this server at most.
    pub concurrency: usize,
    /// Extra root certificates (PEM) for self-signed panels.
    pub ca_pem: Option<Vec<u8>>,
    /// How long a fetched key list is shared before it is fetched again.
    pub key_list_ttl: Duration,
    /// Answers larger than this are refused.
    pub max_body_bytes: usize,
    /// Blots secrets out of every text the server sends back (errors, snippets); by
    /// default this server's API key, for a whole agent every configured secret.
    pub redactor: Arc<Redactor>,
    pub retry: RetryPolicy,
    /// Where to count calls, durations and errors (none in most tests).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// Answers above this are refused unless the server's `max_response_size` says
/// otherwise (the API promises at most 1 MB, but a key list of 200 000 keys is ~50 MB).
pub const DEFAULT_MAX_BODY_BYTES: usize = crate::config::defaults::MAX_RESPONSE_BYTES;
/// 2.x allows 30 key-list calls a minute per worker; one list every 30 s is plenty.
pub const DEFAULT_KEY_LIST_TTL: Duration = Duration::from_secs(30);

impl ClientSettings {
    /// Settings for a configured server; reads its `ca_file`.
    pub fn from_config(server: &crate::config::ServerConfig) -> ApiResult<ClientSettings> {
        let mut settings =
            ClientSettings::new(&server.name, server.url.clone(), server.api_key.clone());
        settings.timeout = server.timeout;
        settings.action_timeout = server.action_timeout;
        settings.concurrency = server.concurrency;
        settings.max_body_bytes = server.max_response_bytes;
        if let Some(path) = &server.ca_file {
            let pem = std::fs::read(path).map_err(|err| {
                let reason = format!("cannot read ca_file {}: {err}", path.display());
                ApiError::new("client setup", ApiErrorKind::Setup { reason })
            })?;
            settings.ca_pem = Some(pem);
        }
        Ok(settings)
    }

    /// Settings with the defaults for everything but where and how to authenticate.
    pub fn new(name: impl Into<String>, base_url: Url, api_key: Secret) -> ClientSettings {
        let redactor = Arc::new(Redactor::new([api_key.expose()]));
        ClientSettings {
            name: name.into(),
            base_url,
            api_key,
            redactor,
            timeout: Duration::from_secs(15),
            action_timeout: Duration::from_secs(60),
            concurrency: 8,
            ca_pem: None,
            key_list_ttl: DEFAULT_KEY_LIST_TTL,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            retry: RetryPolicy::default(),
            metrics: None,
        }
    }
}

struct CachedKeys {
    fetched_at: Instant,
    /// The list while a run may still ask for it again (see `release_key_list`).
    held: Option<Arc<Vec<VpnKey>>>,
    /// The list for as long as anyone still holds it.
    keys: Weak<Vec<VpnKey>>,
    /// Ids and uuids that name more than one key of this list.
    shared: HashSet<String>,
}

/// The identities (id or uuid) that name more than one key: a per-key call by one of
/// them may reach any of those keys.
fn shared_identities(keys: &[VpnKey]) -> HashSet<String> {
    let mut named: foldhash::HashMap<&str, usize> =
        foldhash::HashMap::with_capacity_and_hasher(2 * keys.len(), Default::default());
    for key in keys {
        // A key's id equal to its own uuid (servers that know only uuids) counts once.
        named
            .entry(key.id.as_str())
            .and_modify(|n| *n += 1)
            .or_insert(1);
        if key.uuid != key.id {
            named
                .entry(key.uuid.as_str())
                .and_modify(|n| *n += 1)
                .or_insert(1);
        }
    }
    named
        .into_iter()
        .filter(|(value, n)| *n > 1 && !value.is_empty())
        .map(|(value, _)| value.to_owned())
        .collect()
}

struct CachedStatus {
    fetched_at: Instant,
    status: ApiStatus,
}

/// The id the API-key check asks for: the recorded samples' unknown key. No server
/// makes it (keys get random v4 uuids and ids), so the answer is 404 or 401.
pub const NO_SUCH_KEY: &str = "00000000-0000-4000-8000-000000000000";

/// Routes that answered FastAPI's "Not Found" although the detected generation has them.
const BULK_TRAFFIC_ROUTE: &str = "/traffic/exact";
const VALIDATE_SYNC_ROUTE: &str = "/system/xray/validate-sync";

/// What is known about the server's features. Capabilities follow from the generation
/// (no probing answers worth megabytes); routes that turned out to be missing are
/// remembered per version, so a server that lacks one is not asked again and again.
#[derive(Default)]
struct CapabilityCache {
    current: Option<Capabilities>,
    /// The version `missing_routes` were seen on; another version forgets them.
    missing_for_version: Option<String>,
    missing_routes: Vec<&'static str>,
}

struct Inner {
    settings: ClientSettings,
    /// Base URL without a trailing slash, e.g. `https://host/api`.
    base: String,
    /// Path of the base URL, for endpoint labels (`GET /api/keys`).
    base_path: String,
    /// Where the API's service routes live (2.x `GET /health`): the base without `/api`.
    root: String,
    http: reqwest::Client,
    /// Which shared client `http` is (tests: servers share one).
    http_id: usize,
    in_flight: Semaphore,
    keys: Mutex<Option<CachedKeys>>,
    /// The last GET /api/ answer: health reads it every run, detection and the quota job
    /// reuse it while it is fresh instead of asking again.
    status: StdMutex<Option<CachedStatus>>,
    /// Held while fetching the status for reuse, so concurrent callers share one request.
    status_fetch: Mutex<()>,
    capabilities: Mutex<CapabilityCache>,
}

/// Client of one server's VPN Key Management API. Cheap to clone; clones share the
/// connection pool, the key-list cache and the concurrency cap.
#[derive(Clone)]
pub struct ServerApi {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ServerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerApi")
            .field("name", &self.inner.settings.name)
            .field("base_url", &self.inner.base)
            .field("api_key", &self.inner.settings.api_key)
            .finish()
    }
}

/// Which calls an action is: reads get `timeout` and retries, actions `action_timeout`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Read,
    Action,
}

/// FastAPI's answer for a route that does not exist (as opposed to "Key not found").
fn is_missing_route(error: &ApiError) -> bool {
    matches!(&error.kind, ApiErrorKind::NotFound { detail } if detail == "Not Found")
}

/// A per-key read that took at least this long was waiting on the server (or the
/// network), not on this process: another read in flight would not have slowed it. Well
/// above what a busy machine adds to a nearby server's answer (a loaded 2-core host
/// delays reads by a few milliseconds), well below a distant server's round trip.
pub const WIDEN_AFTER: Duration = Duration::from_millis(10);

/// Whether a batch of per-key reads should put one more read in flight after one that
/// took `took` (pure). A read answered within `WIDEN_AFTER` means the server keeps up
/// with one connection; a slower one means the batch is bound by latency.
pub fn widen_reads(took: Duration) -> bool {
    took >= WIDEN_AFTER
}

/// `text` as a URL, or the setup error of `endpoint`.
fn parse_url(text: &str, endpoint: &str) -> ApiResult<Url> {
    Url::parse(text).map_err(|err| {
        let reason = format!("not a valid URL: {err}");
        ApiError::new(endpoint, ApiErrorKind::Setup { reason })
    })
}

/// Path segment encoding for ids (they are UUIDs in practice, but never trust that).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl ServerApi {
    /// Build a client with an HTTP client of its own (one-off uses: `probe` of one
    /// server, tests). Fails only on a bad CA bundle or TLS setup.
    pub fn new(settings: ClientSettings) -> ApiResult<ServerApi> {
        ServerApi::with_clients(settings, &HttpClients::new())
    }

    /// Build a client on the HTTP client `clients` holds for its TLS setting, shared with
    /// every other server built from the same cache.
    pub fn with_clients(settings: ClientSettings, clients: &HttpClients) -> ApiResult<ServerApi> {
        let shared = clients.client_for(settings.ca_pem.as_deref())?;
        let base = settings.base_url.as_str().trim_end_matches('/').to_string();
        let base_path = settings.base_url.path().trim_end_matches('/').to_string();
        let root = base
            .strip_suffix("/api")
            .unwrap_or(base.as_str())
            .to_string();
        let concurrency = settings.concurrency.max(1);
        Ok(ServerApi {
            inner: Arc::new(Inner {
                settings,
                base,
                base_path,
                root,
                http: shared.client,
                http_id: shared.id,
                in_flight: Semaphore::new(concurrency),
                keys: Mutex::new(None),
                status: StdMutex::new(None),
                status_fetch: Mutex::new(()),
                capabilities: Mutex::new(CapabilityCache::default()),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.settings.name
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.inner.settings
    }

    /// Which shared HTTP client this server uses: equal numbers from one cache mean one
    /// connection pool and one root store.
    pub fn http_client_id(&self) -> usize {
        self.inner.http_id
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        kind: CallKind,
        body: Option<&Value>,
    ) -> ApiResult<Answer> {
        let endpoint = format!("{} {}{}", method, self.inner.base_path, path);
        let url = self.url_for(path, &endpoint)?;
        self.request_url(method, &url, &endpoint, kind, body).await
    }

    /// The URL of `path` under the base URL. Only the path is parsed (every per-key read
    /// builds one: parsing the whole URL, host and all, each time showed in profiles);
    /// the segments in it are already percent-encoded by `encode_segment`.
    fn url_for(&self, path: &str, endpoint: &str) -> ApiResult<Url> {
        if path.contains(['?', '#']) {
            return parse_url(&format!("{}{}", self.inner.base, path), endpoint);
        }
        let mut url = self.inner.settings.base_url.clone();
        url.set_path(&format!("{}{}", self.inner.base_path, path));
        Ok(url)
    }

    async fn request_url(
        &self,
        method: Method,
        url: &Url,
        endpoint: &str,
        kind: CallKind,
        body: Option<&Value>,
    ) -> ApiResult<Answer> {
        let settings = &self.inner.settings;
        let exchange = Exchange {
            client: &self.inner.http,
            api_key: &settings.api_key,
            redactor: &settings.redactor,
            timeout: if kind == CallKind::Action {
                settings.action_timeout
            } else {
                settings.timeout
            },
            max_body_bytes: settings.max_body_bytes,
        };
        let idempotent = matches!(method, Method::GET | Method::HEAD);
        let mut attempt = 1;
        loop {
            let result = {
                // Closed never happens (we never close it); treat it as "no cap".
                let _permit = self.inner.in_flight.acquire().await.ok();
                let started = Instant::now();
                let result = http::exchange(&exchange, method.clone(), url, endpoint, body).await;
                if let Some(metrics) = &settings.metrics {
                    let kind = result.as_ref().err().map(|error| error.kind.label());
                    metrics.api_call(&settings.name, endpoint, started.elapsed(), kind);
                }
                result
            };
            let error = match result {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            match settings
                .retry
                .wait_before_retry(&error.kind, idempotent, attempt)
            {
                Some(wait) => {
                    tracing::debug!(server = %settings.name, endpoint = %endpoint, attempt, wait_ms = wait.as_millis() as u64, error = %error.kind, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                None => return Err(error),
            }
        }
    }

    /// GET `path`: the endpoint's label and the answer's bytes (well-formed JSON).
    async fn get(&self, path: &str) -> ApiResult<(String, Answer)> {
        let answer = self
            .request(Method::GET, path, CallKind::Read, None)
            .await?;
        Ok((format!("GET {}{}", self.inner.base_path, path), answer))
    }

    /// GET `path`, parsed into a JSON tree (small answers only; see `typed.rs`).
    async fn get_json(&self, path: &str) -> ApiResult<(String, Value)> {
        let (endpoint, answer) = self.get(path).await?;
        let json = self.json(&endpoint, &answer)?;
        Ok((endpoint, json))
    }

    /// A small answer as a JSON tree (the exchange already checked that it is JSON).
    fn json(&self, endpoint: &str, answer: &Answer) -> ApiResult<Value> {
        self.decoded(
            endpoint,
            serde_json::from_slice(&answer.body).map_err(|err| DecodeError(err.to_string())),
        )
    }

    /// A decode error quotes the value it choked on (serde does): redacted like any
    /// other text from the server.
    fn decoded<T>(&self, endpoint: &str, result: Result<T, DecodeError>) -> ApiResult<T> {
        result.map_err(|err| {
            ApiError::new(endpoint, ApiErrorKind::Decode { reason: err.0 })
                .redacted(&self.inner.settings.redactor)
        })
    }

    /// GET /api/: the API's name and version (no authentication needed). Always asks the
    /// server (the health job's liveness probe); the answer is kept for
    /// [`ServerApi::recent_api_status`].
    pub async fn api_status(&self) -> ApiResult<ApiStatus> {
        let (endpoint, json) = self.get_json("/").await?;
        let status = self.decoded(&endpoint, wire::api_status(&json))?;
        *self.status_cache() = Some(CachedStatus {
            fetched_at: Instant::now(),
            status: status.clone(),
        });
        Ok(status)
    }

    /// GET /api/ as answered within the last `key_list_ttl` (the health job asks every
    /// run), or asked now. Concurrent callers share one request.
    pub async fn recent_api_status(&self) -> ApiResult<ApiStatus> {
        let _fetching = self.inner.status_fetch.lock().await;
        if let Some(status) = self.fresh_status() {
            return Ok(status);
        }
        self.api_status().await
    }

    fn status_cache(&self) -> std::sync::MutexGuard<'_, Option<CachedStatus>> {
        self.inner.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh_status(&self) -> Option<ApiStatus> {
        self.status_cache()
            .as_ref()
            .filter(|cached| cached.fetched_at.elapsed() < self.inner.settings.key_list_ttl)
            .map(|cached| cached.status.clone())
    }

    /// The version of the last GET /api/ answer, however old, without asking.
    fn known_version(&self) -> Option<String> {
        self.status_cache()
            .as_ref()
            .map(|cached| cached.status.version.clone())
    }

    /// What this server supports. Detected from the version GET /api/ reports (reusing a
    /// recent answer), and detected again when a later answer reports another version or
    /// a route the generation should have answers 404. Only a version keywarden does not
    /// know is probed, with HEAD requests that carry no body.
    pub async fn capabilities(&self) -> ApiResult<Capabilities> {
        let mut cache = self.inner.capabilities.lock().await;
        if let Some(current) = &cache.current
            && self
                .known_version()
                .is_none_or(|version| version == current.version)
        {
            return Ok(current.clone());
        }
        let status = self.recent_api_status().await?;
        if cache.missing_for_version.as_deref() != Some(status.version.as_str()) {
            cache.missing_routes.clear();
            cache.missing_for_version = Some(status.version.clone());
        }
        let generation = Generation::from_version(&status.version);
        let (bulk_usual, validate_usual) = match generation {
            Generation::V1 => (Some(true), Some(false)),
            Generation::V2 => (Some(false), Some(true)),
            Generation::Unknown => (None, None),
        };
        let missing = |route| cache.missing_routes.contains(&route);
        let bulk_traffic = !missing(BULK_TRAFFIC_ROUTE)
            && match bulk_usual {
                Some(usual) => usual,
                None => self.route_exists(BULK_TRAFFIC_ROUTE).await,
            };
        let validate_sync = !missing(VALIDATE_SYNC_ROUTE)
            && match validate_usual {
                Some(usual) => usual,
                None => self.route_exists(VALIDATE_SYNC_ROUTE).await,
            };
        let capabilities = Capabilities {
            version: status.version,
            generation,
            bulk_traffic,
            validate_sync,
        };
        tracing::debug!(server = %self.name(), ?capabilities, "capabilities detected");
        cache.current = Some(capabilities.clone());
        Ok(capabilities)
    }

    /// Whether a read-only route exists on a server of unknown version, asked with HEAD
    /// so that no answer body travels: FastAPI's 404 "Not Found" says no; any other answer
    /// (200, or 405 from servers that do not serve HEAD) says yes; no answer says no.
    async fn route_exists(&self, path: &str) -> bool {
        match self.request(Method::HEAD, path, CallKind::Read, None).await {
            Err(error) if error.is_not_found() => false,
            Err(error) if error.is_transient() => false,
            _ => true,
        }
    }

    /// Forget detected capabilities and the last status (the server may have been
    /// upgraded): the next call detects them again.
    pub async fn forget_capabilities(&self) {
        *self.inner.capabilities.lock().await = CapabilityCache::default();
        *self.status_cache() = None;
    }

    /// A route answered FastAPI's "Not Found": remember that this version lacks it and
    /// detect again, reading the version anew (an upgrade removes routes).
    async fn note_missing_route(&self, route: &'static str, error: &ApiError) {
        if !is_missing_route(error) {
            return;
        }
        let mut cache = self.inner.capabilities.lock().await;
        if cache.missing_routes.contains(&route) {
            return;
        }
        tracing::info!(server = %self.name(), endpoint = %error.endpoint, "endpoint disappeared; detecting capabilities again");
        cache.missing_routes.push(route);
        if cache.missing_for_version.is_none() {
            cache.missing_for_version = cache.current.as_ref().map(|c| c.version.clone());
        }
        cache.current = None;
        *self.status_cache() = None;
    }

    /// Whether the server accepts our API key, without downloading anything: GET
    /// /api/keys/<an id no key has> answers 404 "Key not found" when the key is accepted
    /// and 401 when it is not (recorded: `v*_err_get_unknown.json`,
    /// `v*_err_wrong_key.json`). A 200 (someone made such a key) also means accepted.
    /// FastAPI's route-level "Not Found" does not: that is not this API.
    pub async fn check_api_key(&self) -> ApiResult<()> {
        let path = format!("/keys/{NO_SUCH_KEY}");
        match self.request(Method::GET, &path, CallKind::Read, None).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() && !is_missing_route(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The key list, shared by every caller for `key_list_ttl` (2.x rate-limits it).
    pub async fn list_keys(&self) -> ApiResult<Arc<Vec<VpnKey>>> {
        let mut cached = self.inner.keys.lock().await;
        if let Some(entry) = cached.as_ref()
            && entry.fetched_at.elapsed() < self.inner.settings.key_list_ttl
            && let Some(keys) = entry.held.clone().or_else(|| entry.keys.upgrade())
        {
            return Ok(keys);
        }
        // Holding the lock while fetching makes concurrent callers share one request.
        let (endpoint, answer) = self.get("/keys").await?;
        let keys = Arc::new(self.decoded(
            &endpoint,
            typed::key_list(&answer.body, self.inner.settings.max_body_bytes),
        )?);
        drop(answer);
        *cached = Some(CachedKeys {
            fetched_at: Instant::now(),
            shared: shared_identities(&keys),
            held: Some(keys.clone()),
            keys: Arc::downgrade(&keys),
        });
        Ok(keys)
    }

    /// Stop holding the fetched key list: it stays shared while a caller still holds it
    /// and is freed with the last one; a later `list_keys` fetches it again. The runner
    /// calls this after every run: a 500-server fleet otherwise kept every server's list
    /// (100 000 keys, ~25 MiB) between runs, minutes after it was useful. What the list
    /// said about identities shared by several keys is kept (see `per_key`).
    pub async fn release_key_list(&self) {
        if let Some(cached) = self.inner.keys.lock().await.as_mut() {
            cached.held = None;
        }
    }

    /// Fetch the key list if none was ever fetched (errors are left to the callers
    /// that need the list itself).
    pub async fn ensure_key_list(&self) {
        if self.inner.keys.lock().await.is_none() {
            let _ = self.list_keys().await;
        }
    }

    /// The key list, fetched now (and shared from then on).
    pub async fn refresh_keys(&self) -> ApiResult<Arc<Vec<VpnKey>>> {
        self.invalidate_keys().await;
        self.list_keys().await
    }

    async fn invalidate_keys(&self) {
        *self.inner.keys.lock().await = None;
    }

    /// Fill in the id of a key known only by uuid (or the reverse) from the cached list.
    async fn complete(&self, key: &KeyRef) -> KeyRef {
        if key.id.is_some() && key.uuid.is_some() {
            return key.clone();
        }
        let Ok(keys) = self.list_keys().await else {
            return key.clone();
        };
        keys.iter()
            .find(|k| Some(&k.uuid) == key.uuid.as_ref() || Some(&k.id) == key.id.as_ref())
            .map(VpnKey::key_ref)
            .unwrap_or_else(|| key.clone())
    }

    /// `key` with its missing identity filled in, or an error when an identity of it
    /// names several keys.
    async fn resolve(&self, method: &Method, key: &KeyRef) -> ApiResult<KeyRef> {
        let key = self.complete(key).await;
        // The last key list fetched (fresh or not) says whether an identity names
        // several keys: then no call goes out by it. The quota job leaves such keys
        // alone; this also holds for intents decided before the list changed.
        if let Some(cached) = self.inner.keys.lock().await.as_ref()
            && let Some(value) = key
                .candidates()
                .into_iter()
                .find(|v| cached.shared.contains(*v))
        {
            let kind = ApiErrorKind::AmbiguousKey {
                value: value.to_owned(),
            };
            return Err(ApiError::new(format!("{method} per-key call"), kind)
                .redacted(&self.inner.settings.redactor));
        }
        Ok(key)
    }

    /// The answer to an action did not say it was done: the error names the endpoint and
    /// shows a redacted snippet of what came back.
    fn unconfirmed(&self, endpoint: &str, answer: &Answer) -> ApiError {
        let snippet = answer.snippet(&self.inner.settings.redactor);
        ApiError::new(endpoint, ApiErrorKind::Unconfirmed { snippet })
    }

    /// Run a per-key request by id, then by uuid on 404 (2.x matches some routes by id
    /// only, 1.x installs sometimes by uuid only). All 404: the first error is returned.
    async fn per_key(
        &self,
        method: Method,
        key: &KeyRef,
        kind: CallKind,
        path_for: impl Fn(&str) -> String,
    ) -> ApiResult<Answer> {
        let key = self.resolve(&method, key).await?;
        let mut first_not_found: Option<ApiError> = None;
        for candidate in key.candidates() {
            match self
                .request(
                    method.clone(),
                    &path_for(&encode_segment(candidate)),
                    kind,
                    None,
                )
                .await
            {
                Err(error) if error.is_not_found() => {
                    first_not_found.get_or_insert(error);
                }
                other => return other,
            }
        }
        Err(first_not_found.unwrap_or_else(|| {
            ApiError::new(
                format!("{method} per-key call"),
                ApiErrorKind::NotFound {
                    detail: "key has neither id nor uuid".into(),
                },
            )
        }))
    }

    /// One key by id or uuid.
    pub async fn get_key(&self, key: &KeyRef) -> ApiResult<VpnKey> {
        let answer = self
            .per_key(Method::GET, key, CallKind::Read, |id| format!("/keys/{id}"))
            .await?;
        let endpoint = "GET /keys/{id}";
        self.decoded(
            endpoint,
            wire::vpn_key(&self.json(endpoint, &answer)?, "key"),
        )
    }

    /// GET /api/traffic/exact (1.x): estimates for keys with connections only.
    pub async fn bulk_traffic(&self) -> ApiResult<BulkTraffic> {
        match self.get(BULK_TRAFFIC_ROUTE).await {
            Ok((endpoint, answer)) => self.decoded(
                &endpoint,
                typed::bulk_traffic(&answer.body, self.inner.settings.max_body_bytes),
            ),
            Err(error) => {
                self.note_missing_route(BULK_TRAFFIC_ROUTE, &error).await;
                Err(error)
            }
        }
    }

    /// GET /api/traffic/status (1.x): the traffic monitor's state and per-key figures.
    pub async fn monitor_status(&self) -> ApiResult<MonitorStatus> {
        match self.get("/traffic/status").await {
            Ok((endpoint, answer)) => self.decoded(
                &endpoint,
                typed::monitor_status(&answer.body, self.inner.settings.max_body_bytes),
            ),
            Err(error) => {
                self.note_missing_route(BULK_TRAFFIC_ROUTE, &error).await;
                Err(error)
            }
        }
    }

    /// One key's traffic counter: `/keys/{id}/traffic/exact` on 1.x, `/keys/{id}/traffic`
    /// on 2.x.
    pub async fn key_traffic(&self, key: &KeyRef) -> ApiResult<KeyTraffic> {
        let capabilities = self.capabilities().await?;
        self.key_traffic_on(key, capabilities.bulk_traffic).await
    }

    /// [`ServerApi::key_traffic`] with the capabilities already known (`bulk`: the 1.x
    /// routes).
    async fn key_traffic_on(&self, key: &KeyRef, bulk: bool) -> ApiResult<KeyTraffic> {
        let (suffix, endpoint) = match bulk {
            true => ("traffic/exact", "GET /keys/{id}/traffic/exact"),
            false => ("traffic", "GET /keys/{id}/traffic"),
        };
        let result = self
            .per_key(Method::GET, key, CallKind::Read, |id| {
                format!("/keys/{id}/{suffix}")
            })
            .await;
        match result {
            Ok(answer) => self.decoded(endpoint, typed::key_traffic(&answer.body)),
            Err(error) => {
                self.note_missing_route(BULK_TRAFFIC_ROUTE, &error).await;
                Err(error)
            }
        }
    }

    /// Read many keys' counters, at most `concurrency` at a time. Each key gets its own
    /// result, so one failure does not hide the others.
    ///
    /// The reads start one at a time and widen (one more in flight per slow read, see
    /// [`widen_reads`]) up to `concurrency`: against a nearby server one connection keeps
    /// up, and every extra connection costs a connect, a close and the server's accept;
    /// a distant server widens to the cap within a few round trips.
    pub async fn key_traffic_many(&self, keys: &[KeyRef]) -> Vec<(KeyRef, ApiResult<KeyTraffic>)> {
        // Detect once up front so the parallel reads don't all race to detect.
        let bulk = match self.capabilities().await {
            Ok(capabilities) => capabilities.bulk_traffic,
            Err(error) => {
                return keys
                    .iter()
                    .map(|k| (k.clone(), Err(error.clone())))
                    .collect();
            }
        };
        let cap = self.inner.settings.concurrency.max(1);
        let mut window = 1;
        let mut tasks = tokio::task::JoinSet::new();
        let mut next = 0;
        let mut results: Vec<Option<(KeyRef, ApiResult<KeyTraffic>)>> = vec![None; keys.len()];
        loop {
            while tasks.len() < window && next < keys.len() {
                let client = self.clone();
                let key = keys[next].clone();
                let index = next;
                tasks.spawn(async move {
                    let started = Instant::now();
                    let result = client.key_traffic_on(&key, bulk).await;
                    (index, key, result, started.elapsed())
                });
                next += 1;
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            if let Ok((index, key, result, took)) = joined {
                if widen_reads(took) {
                    window = (window + 1).min(cap);
                }
                results[index] = Some((key, result));
            }
        }
        results
            .into_iter()
            .zip(keys)
            .map(|(slot, key)| {
                slot.unwrap_or_else(|| {
                    let kind = ApiErrorKind::Unreachable {
                        reason: "the read task failed".into(),
                    };
                    (
                        key.clone(),
                        Err(ApiError::new("GET /keys/{id}/traffic", kind)),
                    )
                })
            })
            .collect()
    }

    /// POST /api/keys/{id}/traffic/reset. A 200 without the success marker is an
    /// `Unconfirmed` error; a confirmed reset still needs reading back (servers lie).
    pub async fn reset_traffic(&self, key: &KeyRef) -> ApiResult<ResetConfirmation> {
        let answer = self
            .per_key(Method::POST, key, CallKind::Action, |id| {
                format!("/keys/{id}/traffic/reset")
            })
            .await?;
        let endpoint = "POST /keys/{id}/traffic/reset";
        match self.decoded(
            endpoint,
            wire::reset_confirmation(&self.json(endpoint, &answer)?),
        )? {
            Some(confirmation) => Ok(confirmation),
            None => Err(self.unconfirmed(endpoint, &answer)),
        }
    }

    /// GET /api/system/config-status (on 2.x possibly stale: prefer `validate_sync`).
    pub async fn config_status(&self) -> ApiResult<ConfigStatus> {
        let (endpoint, json) = self.get_json("/system/config-status").await?;
        self.decoded(&endpoint, wire::config_status(&json))
    }

    /// GET /api/system/xray/validate-sync (2.x): reads config.json fresh.
    pub async fn validate_sync(&self) -> ApiResult<SyncValidation> {
        match self.get_json(VALIDATE_SYNC_ROUTE).await {
            Ok((endpoint, json)) => self.decoded(&endpoint, wire::sync_validation(&json)),
            Err(error) => {
                self.note_missing_route(VALIDATE_SYNC_ROUTE, &error).await;
                Err(error)
            }
        }
    }

    /// POST /api/system/sync-config: rewrite config.json from the key store and restart
    /// Xray (every user reconnects).
    pub async fn sync_config(&self) -> ApiResult<SyncOutcome> {
        let answer = self
            .request(Method::POST, "/system/sync-config", CallKind::Action, None)
            .await?;
        let endpoint = "POST /system/sync-config";
        match self.decoded(endpoint, wire::sync_outcome(&self.json(endpoint, &answer)?))? {
            Some(outcome) => Ok(outcome),
            None => Err(self.unconfirmed(endpoint, &answer)),
        }
    }

    /// POST /api/system/verify-reality.
    pub async fn verify_reality(&self) -> ApiResult<RealityOutcome> {
        let answer = self
            .request(
                Method::POST,
                "/system/verify-reality",
                CallKind::Action,
                None,
            )
            .await?;
        let endpoint = "POST /system/verify-reality";
        match self.decoded(
            endpoint,
            wire::reality_outcome(&self.json(endpoint, &answer)?),
        )? {
            Some(outcome) => Ok(outcome),
            None => Err(self.unconfirmed(endpoint, &answer)),
        }
    }

    /// GET /health (2.x, outside /api, no key needed): the state of Xray and the API.
    pub async fn health(&self) -> ApiResult<Health> {
        let endpoint = "GET /health";
        let url = parse_url(&format!("{}/health", self.inner.root), endpoint)?;
        let answer = self
            .request_url(Method::GET, &url, endpoint, CallKind::Read, None)
            .await?;
        self.decoded(endpoint, xray::health(&self.json(endpoint, &answer)?))
    }

    /// GET /api/system/xray/inbounds (2.x): every VLESS inbound as config.json holds it.
    pub async fn xray_inbounds(&self) -> ApiResult<Vec<XrayInbound>> {
        let (endpoint, json) = self.get_json("/system/xray/inbounds").await?;
        self.decoded(&endpoint, xray::xray_inbounds(&json))
    }

    /// GET /api/system/xray/config-status (2.x): the layout of config.json.
    pub async fn xray_layout(&self) -> ApiResult<XrayLayout> {
        let (endpoint, json) = self.get_json("/system/xray/config-status").await?;
        self.decoded(&endpoint, xray::xray_layout(&json))
    }

    /// POST /api/system/fix-reality-keys (2.x): rewrite the Reality keys of config.json
    /// from the key store and restart Xray (every user reconnects).
    pub async fn fix_reality_keys(&self) -> ApiResult<RealityFix> {
        let answer = self
            .request(
                Method::POST,
                "/system/fix-reality-keys",
                CallKind::Action,
                None,
            )
            .await?;
        let endpoint = "POST /system/fix-reality-keys";
        match self.decoded(endpoint, xray::reality_fix(&self.json(endpoint, &answer)?))? {
            Some(fix) => Ok(fix),
            None => Err(self.unconfirmed(endpoint, &answer)),
        }
    }

    /// GET /api/keys/{id}/config: the key's client link (both generations).
    pub async fn key_config(&self, key: &KeyRef) -> ApiResult<KeyConfig> {
        let answer = self
            .per_key(Method::GET, key, CallKind::Read, |id| {
                format!("/keys/{id}/config")
            })
            .await?;
        let endpoint = "GET /keys/{id}/config";
        self.decoded(endpoint, xray::key_config(&self.json(endpoint, &answer)?))
    }

    /// DELETE /api/keys/{id}, then by uuid on 404; 404 on both means already gone.
    pub async fn delete_key(&self, key: &KeyRef) -> ApiResult<DeleteOutcome> {
        let result = self
            .per_key(Method::DELETE, key, CallKind::Action, |id| {
                format!("/keys/{id}")
            })
            .await;
        self.invalidate_keys().await;
        let endpoint = "DELETE /keys/{id}";
        match result {
            Err(error) if error.is_not_found() => Ok(DeleteOutcome::AlreadyGone),
            Err(error) => Err(error),
            Ok(answer) => {
                if self.decoded(
                    endpoint,
                    wire::delete_confirmed(&self.json(endpoint, &answer)?),
                )? {
                    Ok(DeleteOutcome::Deleted)
                } else {
                    Err(self.unconfirmed(endpoint, &answer))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_key_reads_widen_only_when_a_read_waited_on_the_server() {
        let ms = Duration::from_millis;
        for (took, widen) in [
            (Duration::ZERO, false),
            (Duration::from_micros(300), false),
            (ms(2), false),
            (ms(9), false),
            (WIDEN_AFTER, true),
            (ms(20), true),
            (Duration::from_secs(5), true),
        ] {
            assert_eq!(widen_reads(took), widen, "{took:?}");
        }
    }

    fn key(id: &str, uuid: &str) -> VpnKey {
        VpnKey {
            id: id.into(),
            uuid: uuid.into(),
            name: String::new(),
            created_at: None,
            is_active: true,
            port: None,
            short_id: None,
        }
    }

    #[test]
    fn identities_naming_several_keys() {
        let keys = [
            key("1", "u1"),
            key("7", "u2"),
            key("7", "u3"),
            key("u4", "u4"),
            key("5", "u1"),
        ];
        let mut shared: Vec<String> = shared_identities(&keys).into_iter().collect();
        shared.sort();
        assert_eq!(shared, ["7", "u1"]);
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("0f9ba431-c29f-4fb1"), "0f9ba431-c29f-4fb1");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn debug_hides_the_key() {
        let settings = ClientSettings::new(
            "fra-1",
            Url::parse("http://127.0.0.1:1/api").unwrap(),
            Secret::new("topsecret"),
        );
        let client = ServerApi::new(settings.clone()).unwrap();
        assert!(!format!("{client:?}").contains("topsecret"));
        assert!(!format!("{settings:?}").contains("topsecret"));
    }
}
