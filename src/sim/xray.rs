//! The simulated Xray `config.json`: its VLESS inbounds and clients, the drift that can be
//! injected into it and the rewrite a sync does. Pure data; it knows nothing of the key store.

use serde::Deserialize;

use super::ApiGeneration;

/// Where an unknown client is put into config.json (2.x only; 1.x has one shared inbound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientPlacement {
    /// Its own rogue inbound: a 2.x sync removes it.
    OwnInbound,
    /// Inside the first key's inbound: a 2.x sync keeps it (and still answers "synced").
    InsideExisting,
}

/// One change made to config.json behind the API's back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftOp {
    /// Remove a client (on 2.x, with its inbound when it was the only client).
    Remove(String),
    /// Add a client that is no key.
    Add(String, ClientPlacement),
    /// Set the short_id of the inbound holding this client (2.x).
    CorruptShortId(String, String),
}

/// A VLESS + Reality inbound (the 2.x API inbound is not modelled here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub tag: String,
    pub port: u16,
    pub clients: Vec<String>,
    pub short_ids: Vec<String>,
    /// Reality's `dest` ("host:port"); "" when emptied.
    pub dest: String,
    /// Reality's `serverNames`.
    pub server_names: Vec<String>,
}

/// The camouflage target every new inbound gets.
pub const DEFAULT_DEST: &str = "www.microsoft.com:443";
/// The server names every new inbound gets (as recorded in `v2_xray_inbounds.json`).
pub const DEFAULT_SERVER_NAMES: [&str; 8] = [
    "www.microsoft.com",
    "www.cloudflare.com",
    "www.google.com",
    "www.github.com",
    "www.apple.com",
    "www.facebook.com",
    "www.adobe.com",
    "www.instagram.com",
];

impl Inbound {
    /// An inbound with the default Reality target and server names.
    pub fn new(tag: String, port: u16, clients: Vec<String>, short_ids: Vec<String>) -> Inbound {
        Inbound {
            tag,
            port,
            clients,
            short_ids,
            dest: DEFAULT_DEST.to_string(),
            server_names: DEFAULT_SERVER_NAMES.iter().map(|n| n.to_string()).collect(),
        }
    }
}

/// What a sync writes for one active key.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub uuid: &'a str,
    pub port: Option<u16>,
    pub short_id: Option<&'a str>,
}

/// The inbounds of config.json: one shared inbound on 1.x, one inbound per key on 2.x.
#[derive(Debug, Clone)]
pub struct XrayConfig {
    generation: ApiGeneration,
    inbounds: Vec<Inbound>,
}

/// Port of the shared 1.x inbound.
const SHARED_PORT: u16 = 443;
/// Tag of the shared 1.x inbound.
pub const SHARED_TAG: &str = "vless-reality";
/// First port given to rogue 2.x inbounds (outside the keys' range).
const ROGUE_PORT_BASE: u16 = 20000;

pub fn key_tag(uuid: &str) -> String {
    format!("inbound-{uuid}")
}

impl XrayConfig {
    /// An empty config; 1.x gets its shared inbound with the server-wide short_id.
    pub fn new(generation: ApiGeneration, shared_short_id: &str) -> Self {
        let inbounds = match generation {
            ApiGeneration::V1 => vec![Inbound::new(
                SHARED_TAG.to_string(),
                SHARED_PORT,
                Vec::new(),
                vec![shared_short_id.to_string()],
            )],
            ApiGeneration::V2 => Vec::new(),
        };
        XrayConfig {
            generation,
            inbounds,
        }
    }

    pub fn inbounds(&self) -> &[Inbound] {
        &self.inbounds
    }

    /// Every client uuid, in file order, without repeats.
    pub fn client_uuids(&self) -> Vec<String> {
        let mut uuids: Vec<String> = Vec::new();
        for uuid in self.inbounds.iter().flat_map(|i| i.clients.iter()) {
            if !uuids.contains(uuid) {
                uuids.push(uuid.clone());
            }
        }
        uuids
    }

    /// The first short_id of the inbound holding `uuid`: `None` when no inbound holds it.
    pub fn short_id_of(&self, uuid: &str) -> Option<Option<&str>> {
        self.inbounds
            .iter()
            .find(|i| i.clients.iter().any(|c| c == uuid))
            .map(|i| i.short_ids.first().map(String::as_str))
    }

    /// A key was created through the API: its client is written at once.
    pub fn add_key(&mut self, key: Expected<'_>) {
        match self.generation {
            ApiGeneration::V1 => self.shared().clients.push(key.uuid.to_string()),
            ApiGeneration::V2 => self.inbounds.push(Inbound::new(
                key_tag(key.uuid),
                key.port.unwrap_or_default(),
                vec![key.uuid.to_string()],
                key.short_id.map(str::to_string).into_iter().collect(),
            )),
        }
    }

    /// A key was deleted through the API: its client (and 2.x inbound) goes.
    pub fn remove_key(&mut self, uuid: &str) {
        let tag = key_tag(uuid);
        self.inbounds.retain(|i| i.tag != tag);
        self.remove_client(uuid);
    }

    /// Change the file behind the API's back. Returns false when the change does not apply
    /// to this layout (a short_id on 1.x, an unknown client).
    pub fn apply(&mut self, op: &DriftOp) -> bool {
        match op {
            DriftOp::Remove(uuid) => self.remove_client(uuid),
            DriftOp::Add(uuid, placement) => {
                self.add_unknown(uuid, *placement);
                true
            }
            DriftOp::CorruptShortId(uuid, short_id) => self.set_short_id(uuid, short_id),
        }
    }

    /// What `sync-config` does. 1.x rewrites the client list from the key store. 2.x (like
    /// its `update_config_for_keys`) keeps the existing inbound of each active key, clients
    /// included, rewriting only its port and short_id, creates the missing ones and drops
    /// every other inbound.
    pub fn rewrite(&mut self, keys: &[Expected<'_>]) {
        match self.generation {
            ApiGeneration::V1 => {
                self.shared().clients = keys.iter().map(|k| k.uuid.to_string()).collect();
            }
            ApiGeneration::V2 => {
                let mut old = std::mem::take(&mut self.inbounds);
                for key in keys {
                    let tag = key_tag(key.uuid);
                    let mut inbound = match old.iter().position(|i| i.tag == tag) {
                        Some(at) => old.swap_remove(at),
                        None => Inbound::new(tag, 0, vec![key.uuid.to_string()], Vec::new()),
                    };
                    inbound.port = key.port.unwrap_or_default();
                    if let Some(short_id) = key.short_id {
                        inbound.short_ids = vec![short_id.to_string()];
                    }
                    self.inbounds.push(inbound);
                }
            }
        }
    }

    /// Change the Reality settings of every inbound (`None`) or of the one holding a client.
    pub fn edit_reality(&mut self, client: Option<&str>, edit: impl Fn(&mut Inbound)) -> bool {
        let mut found = false;
        for inbound in &mut self.inbounds {
            if client.is_none_or(|uuid| inbound.clients.iter().any(|c| c == uuid)) {
                edit(inbound);
                found = true;
            }
        }
        found
    }

    /// What fix-reality-keys writes (2.x): each key's short id from the key store, and
    /// (a simulator assumption: the real server rebuilds `realitySettings` from its
    /// template) the default `dest` and `serverNames`.
    pub fn fix_reality(&mut self, keys: &[Expected<'_>]) {
        for inbound in &mut self.inbounds {
            let key = keys
                .iter()
                .find(|k| inbound.clients.iter().any(|c| c == k.uuid));
            if let Some(short_id) = key.and_then(|k| k.short_id) {
                inbound.short_ids = vec![short_id.to_string()];
            }
            let fresh = Inbound::new(String::new(), 0, Vec::new(), Vec::new());
            inbound.dest = fresh.dest;
            inbound.server_names = fresh.server_names;
        }
    }

    fn shared(&mut self) -> &mut Inbound {
        if self.inbounds.is_empty() {
            self.inbounds.push(Inbound::new(
                SHARED_TAG.to_string(),
                SHARED_PORT,
                Vec::new(),
                Vec::new(),
            ));
        }
        &mut self.inbounds[0]
    }

    fn remove_client(&mut self, uuid: &str) -> bool {
        let mut found = false;
        for inbound in &mut self.inbounds {
            let before = inbound.clients.len();
            inbound.clients.retain(|c| c != uuid);
            found |= inbound.clients.len() != before;
        }
        if self.generation == ApiGeneration::V2 {
            self.inbounds.retain(|i| !i.clients.is_empty());
        }
        found
    }

    fn add_unknown(&mut self, uuid: &str, placement: ClientPlacement) {
        if self.generation == ApiGeneration::V1 {
            self.shared().clients.push(uuid.to_string());
            return;
        }
        match (placement, self.inbounds.first_mut()) {
            (ClientPlacement::InsideExisting, Some(first)) => first.clients.push(uuid.to_string()),
            _ => {
                let port = ROGUE_PORT_BASE.saturating_add(self.inbounds.len() as u16);
                let short_ids = self
                    .inbounds
                    .first()
                    .map(|i| i.short_ids.clone())
                    .unwrap_or_default();
                self.inbounds.push(Inbound::new(
                    key_tag(uuid),
                    port,
                    vec![uuid.to_string()],
                    short_ids,
                ));
            }
        }
    }

    fn set_short_id(&mut self, uuid: &str, short_id: &str) -> bool {
        if self.generation == ApiGeneration::V1 {
            return false;
        }
        match self
            .inbounds
            .iter_mut()
            .find(|i| i.clients.iter().any(|c| c == uuid))
        {
            Some(inbound) => {
                inbound.short_ids = vec![short_id.to_string()];
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(uuid: &'a str, port: u16, short_id: &'a str) -> Expected<'a> {
        Expected {
            uuid,
            port: Some(port),
            short_id: Some(short_id),
        }
    }

    fn v2_with(keys: &[Expected<'_>]) -> XrayConfig {
        let mut config = XrayConfig::new(ApiGeneration::V2, "00");
        for k in keys {
            config.add_key(*k);
        }
        config
    }

    #[test]
    fn v1_sync_rewrites_the_client_list() {
        let mut config = XrayConfig::new(ApiGeneration::V1, "abcd");
        config.add_key(key("a", 0, ""));
        config.apply(&DriftOp::Add("x".into(), ClientPlacement::InsideExisting));
        config.apply(&DriftOp::Remove("a".into()));
        assert_eq!(config.client_uuids(), ["x"]);
        config.rewrite(&[key("a", 0, "")]);
        assert_eq!(config.client_uuids(), ["a"]);
        assert!(!config.apply(&DriftOp::CorruptShortId("a".into(), "ff".into())));
    }

    #[test]
    fn v2_sync_keeps_clients_inside_existing_inbounds() {
        let (a, b) = (key("a", 10001, "11"), key("b", 10002, "22"));
        let mut config = v2_with(&[a, b]);
        config.apply(&DriftOp::Add("rogue".into(), ClientPlacement::OwnInbound));
        config.apply(&DriftOp::Add(
            "inside".into(),
            ClientPlacement::InsideExisting,
        ));
        config.apply(&DriftOp::CorruptShortId("b".into(), "ff".into()));
        assert_eq!(config.client_uuids(), ["a", "inside", "b", "rogue"]);
        assert_eq!(config.short_id_of("b"), Some(Some("ff")));
        config.rewrite(&[a, b]);
        assert_eq!(config.client_uuids(), ["a", "inside", "b"]);
        assert_eq!(config.short_id_of("b"), Some(Some("22")));
    }

    #[test]
    fn v2_removing_the_only_client_removes_its_inbound_and_sync_recreates_it() {
        let (a, b) = (key("a", 10001, "11"), key("b", 10002, "22"));
        let mut config = v2_with(&[a, b]);
        assert!(config.apply(&DriftOp::Remove("b".into())));
        assert_eq!(config.inbounds().len(), 1);
        assert_eq!(config.short_id_of("b"), None);
        config.rewrite(&[a, b]);
        assert_eq!(config.client_uuids(), ["a", "b"]);
        assert_eq!(config.inbounds()[1].port, 10002);
    }

    #[test]
    fn deleting_a_key_removes_its_inbound() {
        let mut config = v2_with(&[key("a", 10001, "11"), key("b", 10002, "22")]);
        config.remove_key("a");
        assert_eq!(config.client_uuids(), ["b"]);
    }
}
