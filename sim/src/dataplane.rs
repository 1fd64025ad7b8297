//! The simulated data plane: every VLESS inbound of config.json is a real TLS listener on
//! 127.0.0.1 while Xray runs, presenting a certificate for its `dest` host and server
//! names signed by the server's test CA (what a healthy Reality port shows an
//! unauthenticated client). Controls stop Xray (every port closes, `/health` says
//! stopped, `sync-config` and `fix-reality-keys` start it again), close one port, or make
//! one present a certificate for another name.
//!
//! The listeners follow Xray's (re)starts, like the real thing: a sync, a fix, a key
//! created or deleted through the API, and the controls apply the current config.json;
//! drift injected behind the API's back changes nothing until then. Each inbound keeps
//! its port for the simulator's life (reserved while closed, so links stay valid).

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::ApiGeneration;
use super::state::State;
use super::tls::TestCa;
use super::xray::{SHARED_TAG, key_tag};

/// The controls' state (part of [`State`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DataplaneControls {
    pub xray_stopped: bool,
    /// Tags of inbounds whose port refuses connections (a firewall in front of it).
    pub closed: BTreeSet<String>,
    /// Tags of inbounds that present a certificate for another name.
    pub wrong_certificate: BTreeSet<String>,
    /// The host in the keys' links; None: 127.0.0.1, where the listeners are.
    pub link_host: Option<String>,
}

/// What a listener presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertMode {
    /// A certificate for the inbound's dest host and server names.
    Genuine,
    /// A certificate for `wrong.sim.invalid`, signed by the same CA.
    WrongName,
    /// No TLS at all (an inbound without `dest` cannot relay): the connection closes.
    NoTls,
}

/// One inbound's listener as Xray would serve it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub tag: String,
    pub names: Vec<String>,
    pub mode: CertMode,
}

/// The name a wrong certificate is for.
pub const WRONG_NAME: &str = "wrong.sim.invalid";

impl State {
    pub fn xray_running(&self) -> bool {
        !self.dataplane.xray_stopped
    }

    pub fn dataplane_controls(&self) -> &DataplaneControls {
        &self.dataplane
    }

    /// The listeners Xray serves now: none while stopped, else one per inbound that is
    /// not closed.
    pub fn listener_specs(&self) -> Vec<ListenerSpec> {
        if self.dataplane.xray_stopped {
            return Vec::new();
        }
        self.config
            .inbounds()
            .iter()
            .filter(|i| !self.dataplane.closed.contains(&i.tag))
            .map(|inbound| {
                let dest_host = inbound
                    .dest
                    .rsplit_once(':')
                    .map(|(host, _)| host.to_string())
                    .filter(|host| !host.is_empty());
                let mut names: Vec<String> = dest_host.iter().cloned().collect();
                names.extend(inbound.server_names.iter().cloned());
                names.sort();
                names.dedup();
                let mode = if dest_host.is_none() {
                    CertMode::NoTls
                } else if self.dataplane.wrong_certificate.contains(&inbound.tag) {
                    CertMode::WrongName
                } else {
                    CertMode::Genuine
                };
                ListenerSpec {
                    tag: inbound.tag.clone(),
                    names,
                    mode,
                }
            })
            .collect()
    }

    /// The tag of the inbound a key's link points at.
    pub fn link_tag(&self, uuid: &str) -> String {
        match self.generation {
            ApiGeneration::V1 => SHARED_TAG.to_string(),
            ApiGeneration::V2 => key_tag(uuid),
        }
    }

    /// "Xray stops": every port closes.
    pub fn stop_xray(&mut self) {
        self.dataplane.xray_stopped = true;
    }

    /// What sync-config and fix-reality-keys do to Xray.
    pub fn restart_xray(&mut self) {
        self.dataplane.xray_stopped = false;
        if self.switches.restart_zeroes_counters {
            for record in &mut self.keys {
                record.key.total_bytes = 0;
            }
        }
    }

    /// The host the keys' links name.
    pub fn link_host(&self) -> String {
        match &self.dataplane.link_host {
            Some(host) => host.clone(),
            None => self.dataplane_ip.to_string(),
        }
    }

    /// Close (or open again) the port of the inbound holding this client.
    pub fn set_port_closed(&mut self, uuid: &str, closed: bool) -> bool {
        let tag = self.link_tag(uuid);
        if closed {
            self.dataplane.closed.insert(tag)
        } else {
            self.dataplane.closed.remove(&tag)
        }
    }

    /// Make the inbound holding this client present a certificate for another name.
    pub fn set_wrong_certificate(&mut self, uuid: &str, wrong: bool) -> bool {
        let tag = self.link_tag(uuid);
        if wrong {
            self.dataplane.wrong_certificate.insert(tag)
        } else {
            self.dataplane.wrong_certificate.remove(&tag)
        }
    }
}

/// An inbound's port: reserved (bound, not listening: connections are refused, and no
/// other socket can take the port) or listening.
enum Slot {
    Reserved(TcpSocket),
    Listening {
        spec: ListenerSpec,
        task: JoinHandle<()>,
    },
    /// Between the two (being switched).
    Empty,
}

/// The running listeners of one simulated server.
pub struct Listeners {
    ca: TestCa,
    /// The loopback address every listener binds (127.0.0.1 unless told otherwise).
    ip: Ipv4Addr,
    slots: Mutex<HashMap<String, (u16, Slot)>>,
    /// One apply at a time (two requests restarting "Xray" together).
    applying: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners").finish_non_exhaustive()
    }
}

/// How long a connection may take to complete its handshake.
const HANDSHAKE: Duration = Duration::from_secs(5);

fn reserve(ip: Ipv4Addr, port: u16) -> std::io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((ip, port)))?;
    Ok(socket)
}

impl Listeners {
    pub fn new() -> Listeners {
        Listeners::on(Ipv4Addr::LOCALHOST)
    }

    /// Listeners bound to `ip` (another loopback address gives a large fleet in one
    /// machine more ports than 127.0.0.1's ephemeral range holds).
    pub fn on(ip: Ipv4Addr) -> Listeners {
        Listeners {
            // A name of its own: a bundle trusting many servers' CAs (a fleet) must not
            // make a verifier try hundreds of same-named anchors for each certificate.
            ca: TestCa::new(&format!(
                "keywarden simulator CA {:016x}",
                fastrand::u64(..)
            ))
            .expect("sim: generating the test CA"),
            ip,
            slots: Mutex::new(HashMap::new()),
            applying: tokio::sync::Mutex::new(()),
        }
    }

    /// The CA certificate (PEM) the listeners' certificates chain to.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u16, Slot)>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The port of an inbound, reserved on first use.
    pub fn port_for(&self, tag: &str) -> u16 {
        let mut slots = self.lock();
        if let Some((port, _)) = slots.get(tag) {
            return *port;
        }
        match reserve(self.ip, 0).and_then(|s| Ok((s.local_addr()?.port(), s))) {
            Ok((port, socket)) => {
                slots.insert(tag.to_string(), (port, Slot::Reserved(socket)));
                port
            }
            Err(error) => {
                tracing::warn!(%error, tag, "sim: cannot reserve a port for an inbound");
                0
            }
        }
    }

    /// Make the listeners match `specs`: stop what is not wanted (or changed), start
    /// what is missing. Returns once every change took effect.
    pub async fn apply(&self, specs: Vec<ListenerSpec>) {
        let _one_at_a_time = self.applying.lock().await;
        let mut stopping = Vec::new();
        {
            let mut slots = self.lock();
            for (tag, (_, slot)) in slots.iter_mut() {
                let keep = match slot {
                    Slot::Listening { spec, .. } => specs.iter().any(|s| s == spec),
                    _ => true,
                };
                if !keep && let Slot::Listening { task, .. } = std::mem::replace(slot, Slot::Empty)
                {
                    stopping.push((tag.clone(), task));
                }
            }
        }
        // Every port closes at once (as when Xray stops): abort all, then wait for all.
        for (_, task) in &stopping {
            task.abort();
        }
        for (tag, task) in stopping {
            let _ = task.await;
            self.reserve_again(&tag).await;
        }
        for spec in specs {
            let port = self.port_for(&spec.tag);
            let socket = {
                let mut slots = self.lock();
                match slots.get_mut(&spec.tag) {
                    Some((_, slot @ Slot::Reserved(_))) => {
                        match std::mem::replace(slot, Slot::Empty) {
                            Slot::Reserved(socket) => Some(socket),
                            _ => None,
                        }
                    }
                    // The port could not be held after it last closed: try again now.
                    Some((_, Slot::Empty)) => reserve(self.ip, port).ok(),
                    _ => None,
                }
            };
            let Some(socket) = socket else { continue };
            let listener = match socket.listen(1024) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, port, tag = %spec.tag, "sim: cannot listen on an inbound's port");
                    self.reserve_again(&spec.tag).await;
                    continue;
                }
            };
            let acceptor = match spec.mode {
                CertMode::NoTls => None,
                CertMode::Genuine => self
                    .ca
                    .server_config(&spec.names)
                    .ok()
                    .map(TlsAcceptor::from),
                CertMode::WrongName => self
                    .ca
                    .server_config(&[WRONG_NAME.to_string()])
                    .ok()
                    .map(TlsAcceptor::from),
            };
            let task = tokio::spawn(serve(listener, acceptor));
            if let Some((_, slot)) = self.lock().get_mut(&spec.tag) {
                *slot = Slot::Listening { spec, task };
            }
        }
    }

    /// After a listener closed: hold the port again (retrying while the OS frees it).
    async fn reserve_again(&self, tag: &str) {
        let Some(port) = self.lock().get(tag).map(|(port, _)| *port) else {
            return;
        };
        for _ in 0..100 {
            if let Ok(socket) = reserve(self.ip, port) {
                if let Some((_, slot)) = self.lock().get_mut(tag) {
                    *slot = Slot::Reserved(socket);
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(port, tag, "sim: cannot hold an inbound's port again");
    }

    /// Stop every listener at once (the simulator stops).
    pub fn stop_all(&self) {
        for (_, (_, slot)) in self.lock().drain() {
            if let Slot::Listening { task, .. } = slot {
                task.abort();
            }
        }
    }

    /// Which inbounds listen now, with their ports (tests and `_sim/state`).
    pub fn listening(&self) -> Vec<(String, u16)> {
        let mut open: Vec<(String, u16)> = self
            .lock()
            .iter()
            .filter(|(_, (_, slot))| matches!(slot, Slot::Listening { .. }))
            .map(|(tag, (port, _))| (tag.clone(), *port))
            .collect();
        open.sort();
        open
    }
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners::new()
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Accept connections and complete TLS handshakes (then close: the probe needs no more).
async fn serve(listener: TcpListener, acceptor: Option<TlsAcceptor>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some(acceptor) = acceptor.clone() {
                        connections.spawn(async move {
                            let _ = tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await;
                        });
                    }
                    // Without TLS the stream is dropped here: the client sees it close.
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
