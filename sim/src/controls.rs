//! The test controls on the simulated state: change keys, counters, config.json, Reality,
//! switches and the clock behind the API's back. Pure code, shared by `SimHandle` and the
//! admin routes.

use std::time::Duration;

use super::RealityField;
use super::state::{State, Stranger, short_id};
use super::xray::{ClientPlacement, DriftOp};

/// A control named a key that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sim: no key has id or uuid {0:?}")]
pub struct UnknownKey(pub String);

impl State {
    fn key_mut(&mut self, id_or_uuid: &str) -> Result<&mut super::SimKey, UnknownKey> {
        let at = self
            .find(id_or_uuid)
            .ok_or_else(|| UnknownKey(id_or_uuid.to_string()))?;
        Ok(&mut self.keys[at].key)
    }

    pub fn set_active(&mut self, id_or_uuid: &str, active: bool) -> Result<(), UnknownKey> {
        self.key_mut(id_or_uuid)?.is_active = active;
        Ok(())
    }

    pub fn set_counter(&mut self, id_or_uuid: &str, bytes: u64) -> Result<(), UnknownKey> {
        self.key_mut(id_or_uuid)?.total_bytes = bytes;
        Ok(())
    }

    pub fn add_traffic(&mut self, id_or_uuid: &str, bytes: u64) -> Result<(), UnknownKey> {
        let key = self.key_mut(id_or_uuid)?;
        key.total_bytes = key.total_bytes.saturating_add(bytes);
        Ok(())
    }

    pub fn set_connections(&mut self, id_or_uuid: &str, n: u32) -> Result<(), UnknownKey> {
        self.key_mut(id_or_uuid)?.connections = n;
        Ok(())
    }

    /// Add bytes to a stranger uuid and set its connections (a gauge).
    pub fn add_stranger_traffic(&mut self, uuid: &str, bytes: u64, connections: u32) {
        match self.strangers.iter_mut().find(|s| s.uuid == uuid) {
            Some(s) => {
                s.bytes = s.bytes.saturating_add(bytes);
                s.connections = connections;
            }
            None => self.strangers.push(Stranger {
                uuid: uuid.to_string(),
                bytes,
                connections,
            }),
        }
    }

    /// Give about half the keys (deterministically) some traffic and connections, so a
    /// standalone simulator has figures to show.
    pub fn seed_traffic(&mut self) {
        for i in 0..self.keys.len() {
            if i % 2 == 0 || self.rng.bool() {
                let megabytes = self.rng.u64(1..5_000);
                self.keys[i].key.total_bytes = megabytes * 1_048_576 + self.rng.u64(..1_048_576);
                self.keys[i].key.connections = self.rng.u32(1..6);
            }
        }
    }

    /// Change config.json behind the API's back, and remember it for `drift_returns`.
    pub fn inject(&mut self, op: DriftOp) -> bool {
        let applied = self.config.apply(&op);
        if applied {
            self.drift_log.push(op);
        }
        applied
    }

    pub fn remove_config_client(&mut self, uuid: &str) -> bool {
        self.inject(DriftOp::Remove(uuid.to_string()))
    }

    pub fn add_config_client(&mut self, uuid: &str, placement: ClientPlacement) -> bool {
        self.inject(DriftOp::Add(uuid.to_string(), placement))
    }

    /// Give the inbound of this client a short_id that differs from the key's (2.x).
    pub fn corrupt_short_id(&mut self, uuid: &str) -> bool {
        let current = self.config.short_id_of(uuid).flatten().map(str::to_string);
        let mut other = short_id(&mut self.rng);
        while Some(&other) == current.as_ref() {
            other = short_id(&mut self.rng);
        }
        self.inject(DriftOp::CorruptShortId(uuid.to_string(), other))
    }

    /// Remove a Reality field: from the settings verify-reality reads, and on 2.x from
    /// every inbound of the listing (the private key is not listed).
    pub fn break_reality(&mut self, field: RealityField) {
        self.reality.missing.insert(field);
        if self.generation == super::ApiGeneration::V2 {
            self.config.edit_reality(None, |inbound| match field {
                RealityField::Dest => inbound.dest.clear(),
                RealityField::ServerNames => inbound.server_names.clear(),
                RealityField::ShortIds => inbound.short_ids.clear(),
                RealityField::PrivateKey => {}
            });
        }
    }

    pub fn repair_reality(&mut self) {
        self.reality.missing.clear();
        if self.generation == super::ApiGeneration::V2 {
            let expected: Vec<super::xray::Expected<'_>> = self.expected();
            let mut config = self.config.clone();
            config.fix_reality(&expected);
            self.config = config;
        }
    }

    pub fn set_max_time_diff(&mut self, value: u64) {
        self.reality.max_time_diff = value;
    }

    /// "Restart the API": the 2.x config cache is dropped and the rate limits forgotten.
    pub fn restart_api(&mut self) {
        self.config_cache = None;
        self.sync_limit.reset();
        self.keys_limit.reset();
    }

    pub fn set_sync_rate_limit(&mut self, per_window: u32, window: Duration) {
        self.sync_limit.configure(per_window, window);
    }

    pub fn set_keys_rate_limit(&mut self, per_window: u32, window: Duration) {
        self.keys_limit.configure(per_window, window);
    }

    /// Move the simulated clock forward (rate-limit windows, timestamps, uptime).
    pub fn advance_clock(&mut self, by: Duration) {
        self.clock_offset += by;
    }

    pub fn push_request(&mut self, record: super::RequestRecord) {
        self.requests_total += 1;
        if self.requests.len() < self.request_log_limit {
            self.requests.push(record);
        }
    }

    pub fn requests(&self) -> &[super::RequestRecord] {
        &self.requests
    }

    pub fn clear_requests(&mut self) {
        self.requests.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ApiError;
    use crate::{ApiGeneration, SimOptions};

    fn state(generation: ApiGeneration) -> State {
        State::new(&SimOptions::new(generation, 3, "k"))
    }

    fn uuids(s: &State) -> (String, String) {
        (s.keys[0].key.uuid.clone(), s.keys[1].key.uuid.clone())
    }

    #[test]
    fn seeded_keys_are_reproducible_and_named() {
        let (a, b) = (state(ApiGeneration::V2), state(ApiGeneration::V2));
        assert_eq!(a.keys(), b.keys());
        let names: Vec<String> = a.keys().into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["Alice iPhone", "Bob laptop", "key-003"]);
        let k = &a.keys()[0];
        assert_eq!(k.port, Some(10001));
        assert_eq!(k.short_id.as_ref().map(String::len), Some(8));
        assert_eq!(k.created_at.len(), "2025-08-02T15:22:39.822640".len());
        assert_eq!(k.uuid.as_bytes()[14], b'4');
        let other = State::new(&SimOptions {
            seed: 7,
            ..SimOptions::new(ApiGeneration::V2, 3, "k")
        });
        assert_ne!(a.keys()[0].uuid, other.keys()[0].uuid);
        assert_eq!(state(ApiGeneration::V1).keys()[0].port, None);
    }

    #[test]
    fn sync_repairs_drift() {
        for generation in [ApiGeneration::V1, ApiGeneration::V2] {
            let mut s = state(generation);
            let now = s.now();
            let (alice, _) = uuids(&s);
            s.remove_config_client(&alice);
            s.add_config_client("stranger", ClientPlacement::OwnInbound);
            assert!(!s.config_status(&now).synchronized);
            s.restart_api();
            assert!(s.sync(&now).is_ok(), "{generation:?}");
            assert_eq!(s.config.client_uuids().len(), 3);
            assert!(s.validation().synced);
            assert_eq!(s.sync_count, 1);
        }
    }

    #[test]
    fn v2_config_status_reads_a_stale_cache_until_restart() {
        let mut s = state(ApiGeneration::V2);
        let now = s.now();
        let (_, bob) = uuids(&s);
        assert!(s.config_status(&now).synchronized); // warms the cache
        s.remove_config_client(&bob);
        assert!(s.config_status(&now).synchronized, "stale cache");
        assert_eq!(s.validation().missing_in_config, std::slice::from_ref(&bob));
        s.restart_api();
        let status = s.config_status(&now);
        assert!(!status.synchronized);
        assert_eq!(status.config_json_count, 2);
    }

    #[test]
    fn v2_cold_drift_sync_repairs_but_answers_500() {
        let mut s = state(ApiGeneration::V2);
        let now = s.now();
        let (_, bob) = uuids(&s);
        s.remove_config_client(&bob);
        assert!(!s.config_status(&now).synchronized); // cache filled with the drift
        assert_eq!(
            s.sync(&now),
            Err(ApiError::detail(
                500,
                "Configuration sync verification failed"
            ))
        );
        assert!(s.validation().synced, "the file was repaired");
        assert!(!s.config_status(&now).synchronized, "still the stale cache");
        s.restart_api();
        assert!(s.config_status(&now).synchronized);
    }

    #[test]
    fn v2_warm_drift_inside_an_inbound_survives_a_synced_sync() {
        let mut s = state(ApiGeneration::V2);
        let now = s.now();
        s.config_status(&now);
        s.add_config_client("inside", ClientPlacement::InsideExisting);
        s.add_config_client("rogue", ClientPlacement::OwnInbound);
        assert_eq!(s.validation().extra_in_config, ["inside", "rogue"]);
        let validation = s.sync(&now).expect("200").expect("2.x validation");
        assert!(!validation.synced);
        assert_eq!(validation.extra_in_config, ["inside"]);
        assert!(s.config_status(&now).synchronized, "stale cache");
    }

    #[test]
    fn short_id_mismatches_are_reported_and_synced_away() {
        let mut s = state(ApiGeneration::V2);
        let now = s.now();
        let (alice, _) = uuids(&s);
        assert!(s.corrupt_short_id(&alice));
        let v = s.validation();
        assert!(v.uuid_synced && !v.short_id_synced && !v.synced);
        assert_eq!(v.short_id_mismatches[0].uuid, alice);
        assert_eq!(v.short_id_mismatches_count, 1);
        s.sync(&now).expect("sync");
        assert!(s.validation().synced);
        assert!(!state(ApiGeneration::V1).corrupt_short_id(&alice));
    }

    #[test]
    fn sync_noop_and_drift_returns() {
        let mut s = state(ApiGeneration::V1);
        let now = s.now();
        let (alice, _) = uuids(&s);
        s.remove_config_client(&alice);
        s.switches.sync_noop = true;
        s.sync(&now).expect("sync");
        assert!(!s.config_status(&now).synchronized);
        s.switches.sync_noop = false;
        s.switches.drift_returns = true;
        s.sync(&now).expect("sync");
        assert!(!s.config_status(&now).synchronized, "drift came back");
        s.switches.drift_returns = false;
        s.sync(&now).expect("sync");
        assert!(s.config_status(&now).synchronized);
        s.sync(&now).expect("sync");
        assert!(s.config_status(&now).synchronized, "drift log was cleared");
    }

    #[test]
    fn v2_sync_rate_limit_follows_the_injected_clock() {
        let mut s = state(ApiGeneration::V2);
        let now = s.now();
        for _ in 0..3 {
            s.sync(&now).expect("sync");
        }
        assert_eq!(
            s.sync(&now),
            Err(ApiError::RateLimited(
                "Rate limit exceeded: 3 per 1 minute".into()
            ))
        );
        assert_eq!(s.sync_count, 3);
        s.advance_clock(Duration::from_secs(60));
        assert!(s.sync(&s.now()).is_ok());
        s.set_keys_rate_limit(1, Duration::from_secs(5));
        assert!(s.hit_keys_limit(&now).is_ok());
        assert!(s.hit_keys_limit(&now).is_err());
        s.restart_api();
        assert!(s.hit_keys_limit(&now).is_ok());
    }

    #[test]
    fn v2_second_reset_without_a_read_has_no_history() {
        let mut s = state(ApiGeneration::V2);
        let id = s.keys[0].key.id.clone();
        let uuid = s.keys[0].key.uuid.clone();
        s.set_counter(&id, 500).expect("key");
        assert!(s.reset_v2(&id).is_ok());
        assert_eq!(s.keys[0].key.total_bytes, 0);
        assert_eq!(
            s.reset_v2(&id),
            Err(ApiError::detail(
                404,
                "Traffic history not found for this key"
            ))
        );
        s.read_traffic_v2(&id).expect("read");
        assert!(s.reset_v2(&id).is_ok());
        assert_eq!(s.reset_v2(&uuid), Err(ApiError::key_not_found()));
        assert_eq!(s.read_traffic_v2(&uuid), Err(ApiError::key_not_found()));
        assert_eq!(s.reset_count, 2);
    }

    #[test]
    fn ignored_resets_answer_but_change_nothing() {
        for generation in [ApiGeneration::V1, ApiGeneration::V2] {
            let mut s = state(generation);
            let id = s.keys[0].key.id.clone();
            s.set_counter(&id, 1234).expect("key");
            s.switches.resets_ignored = true;
            let reset = match generation {
                ApiGeneration::V1 => s.reset_v1(&id),
                ApiGeneration::V2 => s.reset_v2(&id),
            };
            assert!(reset.is_ok());
            assert_eq!(s.keys[0].key.total_bytes, 1234);
        }
    }

    #[test]
    fn v1_inactive_keys_refuse_traffic_calls() {
        let mut s = state(ApiGeneration::V1);
        let id = s.keys[1].key.id.clone();
        s.set_active(&id, false).expect("key");
        assert_eq!(
            s.reset_v1(&id),
            Err(ApiError::detail(400, "Key is not active"))
        );
        assert_eq!(s.set_counter("nope", 1), Err(UnknownKey("nope".into())));
    }

    #[test]
    fn verify_reality_fails_on_missing_fields_and_fixes_max_time_diff() {
        let mut s = state(ApiGeneration::V1);
        s.set_max_time_diff(0);
        s.break_reality(RealityField::ServerNames);
        assert!(s.verify_reality().is_err());
        assert_eq!(s.reality.max_time_diff, 0);
        s.repair_reality();
        assert!(s.verify_reality().is_ok());
        assert_eq!(s.reality.max_time_diff, 600);
        let mut v2 = state(ApiGeneration::V2);
        assert!(
            v2.verify_reality().is_err(),
            "2.x layout: API inbound first"
        );
        v2.switches.verify_reality_broken = false;
        assert!(v2.verify_reality().is_ok());
    }

    #[test]
    fn deleting_removes_key_and_client() {
        let mut s = state(ApiGeneration::V2);
        let (alice, _) = uuids(&s);
        let deleted = s.delete_key(&alice).expect("delete");
        assert_eq!(deleted.uuid, alice);
        assert!(!s.config.client_uuids().contains(&alice));
        assert_eq!(s.delete_key(&alice), Err(ApiError::key_not_found()));
        let created = s.insert_key("Carol", String::new(), false).expect("port");
        assert_eq!(created.port, Some(10001), "the freed port is reused");
    }
}
