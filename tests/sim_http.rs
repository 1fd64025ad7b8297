//! The simulated API over real HTTP: every recorded sample's status and JSON shape, the
//! faults, the down mode, the admin routes and the request log. Each test starts its own
//! simulator on 127.0.0.1:0.

#[path = "sim_http/admin.rs"]
mod admin;
#[path = "sim_http/faults.rs"]
mod faults;
#[path = "sim_http/samples_v1.rs"]
mod samples_v1;
#[path = "sim_http/samples_v2.rs"]
mod samples_v2;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use keywarden_sim::{ApiGeneration, SimHandle, SimOptions, SimServer};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

pub const API_KEY: &str = "test-api-key";

/// A running simulator and a client for it.
pub struct Sim {
    pub server: SimServer,
    pub handle: SimHandle,
    pub client: reqwest::Client,
}

/// One answer: status, headers, body (JSON, or `Value::Null` when it is not JSON).
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

/// Which `X-API-Key` to send.
#[derive(Clone, Copy)]
pub enum Key {
    Right,
    Wrong,
    Absent,
}

pub fn client(timeout: Duration) -> reqwest::Client {
    keywarden::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("build reqwest client")
}

impl Sim {
    pub async fn start(generation: ApiGeneration, keys: usize) -> Sim {
        let server = SimServer::start_local(SimOptions::new(generation, keys, API_KEY))
            .await
            .expect("start the simulator");
        let handle = server.handle();
        Sim {
            server,
            handle,
            client: client(Duration::from_secs(10)),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr())
    }

    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        key: Key,
        body: Option<Value>,
    ) -> reqwest::Result<Reply> {
        let mut request = self.client.request(method, self.url(path));
        match key {
            Key::Right => request = request.header("X-API-Key", API_KEY),
            Key::Wrong => request = request.header("X-API-Key", "wrong-key"),
            Key::Absent => {}
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            text,
            json,
        })
    }

    pub async fn call(&self, method: Method, path: &str, key: Key, body: Option<Value>) -> Reply {
        let what = format!("{method} {path}");
        self.try_call(method, path, key, body)
            .await
            .unwrap_or_else(|err| panic!("{what}: no answer: {err}"))
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Key::Right, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> Reply {
        self.call(Method::POST, path, Key::Right, body).await
    }
}

fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/api-samples")
}

/// A recorded answer, e.g. `sample("v1_keys_list")`.
pub fn sample(name: &str) -> Value {
    let path = samples_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("parse {}: {err}", path.display()))
}

/// An index row: recorded status, method and path.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub status: u16,
    pub method: String,
}

/// `v1_index.tsv` / `v2_index.tsv`: name -> recorded status and method.
pub fn index(generation: &str) -> BTreeMap<String, Recorded> {
    let path = samples_dir().join(format!("{generation}_index.tsv"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 3, "index line {line:?}");
            let method = fields[2].split(' ').next().unwrap_or_default();
            let recorded = Recorded {
                status: fields[1].parse().expect("status"),
                method: method.to_string(),
            };
            (fields[0].to_string(), recorded)
        })
        .collect()
}

/// Objects keyed by data (ports, uuids) rather than by field names.
fn is_map(object: &serde_json::Map<String, Value>) -> bool {
    !object.is_empty()
        && object.keys().all(|k| {
            k.chars().all(|c| c.is_ascii_digit()) || (k.len() == 36 && k.matches('-').count() == 4)
        })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shape_diff(at: &str, actual: &Value, sample: &Value, problems: &mut Vec<String>) {
    match (actual, sample) {
        (Value::Object(a), Value::Object(s)) if is_map(s) => {
            if let Some(first) = s.values().next() {
                for (k, v) in a {
                    shape_diff(&format!("{at}.{k}"), v, first, problems);
                }
            }
        }
        (Value::Object(a), Value::Object(s)) => {
            let (ak, sk): (Vec<_>, Vec<_>) = (a.keys().collect(), s.keys().collect());
            let mut ak_sorted = ak.clone();
            let mut sk_sorted = sk.clone();
            ak_sorted.sort();
            sk_sorted.sort();
            if ak_sorted != sk_sorted {
                problems.push(format!(
                    "{at}: keys {ak_sorted:?}, sample has {sk_sorted:?}"
                ));
            }
            for (k, sv) in s {
                if let Some(av) = a.get(k) {
                    shape_diff(&format!("{at}.{k}"), av, sv, problems);
                }
            }
        }
        (Value::Array(a), Value::Array(s)) => {
            if let Some(first) = s.first() {
                if a.is_empty() {
                    problems.push(format!("{at}: empty, the sample has entries"));
                }
                for (i, v) in a.iter().enumerate() {
                    shape_diff(&format!("{at}[{i}]"), v, first, problems);
                }
            }
        }
        _ if kind(actual) == kind(sample) => {}
        _ => problems.push(format!(
            "{at}: {} {actual}, sample has {} {sample}",
            kind(actual),
            kind(sample)
        )),
    }
}

/// Same field names (recursively), same value types (int and float are both numbers).
pub fn assert_same_shape(actual: &Value, sample_name: &str) {
    let mut problems = Vec::new();
    shape_diff("$", actual, &sample(sample_name), &mut problems);
    assert!(
        problems.is_empty(),
        "{sample_name}: shape differs:\n  {}\nactual: {actual}",
        problems.join("\n  ")
    );
}

/// Walks a generation's recorded calls in order: status and shape of each, and, for error
/// answers, the exact body. Remembers which samples it checked.
pub struct Walk<'a> {
    pub sim: &'a Sim,
    prefix: &'static str,
    index: BTreeMap<String, Recorded>,
    pub covered: Vec<String>,
}

impl<'a> Walk<'a> {
    pub fn new(sim: &'a Sim, prefix: &'static str) -> Walk<'a> {
        Walk {
            sim,
            prefix,
            index: index(prefix),
            covered: Vec::new(),
        }
    }

    pub async fn check(
        &mut self,
        name: &str,
        method: Method,
        path: &str,
        key: Key,
        body: Option<Value>,
    ) -> Reply {
        let sample_name = format!("{}_{name}", self.prefix);
        let recorded = self
            .index
            .get(name)
            .unwrap_or_else(|| panic!("{sample_name} is not in the index"))
            .clone();
        assert_eq!(method.as_str(), recorded.method, "{sample_name}: method");
        let reply = self.sim.call(method, path, key, body).await;
        assert_eq!(
            reply.status, recorded.status,
            "{sample_name}: status of {path}: {}",
            reply.text
        );
        assert_same_shape(&reply.json, &sample_name);
        if reply.status >= 400 {
            assert_eq!(
                reply.json,
                sample(&sample_name),
                "{sample_name}: error body"
            );
        }
        self.covered.push(name.to_string());
        reply
    }

    pub async fn get(&mut self, name: &str, path: &str) -> Reply {
        self.check(name, Method::GET, path, Key::Right, None).await
    }

    pub async fn post(&mut self, name: &str, path: &str) -> Reply {
        self.check(name, Method::POST, path, Key::Right, None).await
    }

    /// Every sample of the index was checked.
    pub fn assert_complete(&self) {
        let missing: Vec<&String> = self
            .index
            .keys()
            .filter(|name| !self.covered.contains(name))
            .collect();
        assert!(missing.is_empty(), "samples never checked: {missing:?}");
    }
}

/// The same boolean as the sample at this JSON pointer.
pub fn assert_same_at(actual: &Value, sample_name: &str, pointer: &str) {
    assert_eq!(
        actual.pointer(pointer),
        sample(sample_name).pointer(pointer),
        "{sample_name}: {pointer} in {actual}"
    );
}

/// Poll `check` (every 20 ms, at most `limit`) until it holds.
pub async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
