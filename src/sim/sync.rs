//! What the API does with config.json: sync, `config-status` (and its 2.x stale cache),
//! 2.x `validate-sync`, and `verify-reality`. Pure code on [`State`].

use std::collections::BTreeSet;

use super::state::{ApiError, Now, State};
use super::wire::{ConfigStatus, ShortIdMismatch, Validation};
use super::{ApiGeneration, RealityField};

impl State {
    /// `POST /api/system/sync-config`: `Some(validation)` on 2.x, `None` on 1.x.
    pub fn sync(&mut self, now: &Now) -> Result<Option<Validation>, ApiError> {
        if self.generation == ApiGeneration::V2 {
            self.sync_limit
                .hit(now.instant)
                .map_err(ApiError::RateLimited)?;
        }
        self.sync_count += 1;
        // Both generations restart Xray inside a sync: a stopped Xray starts again.
        self.restart_xray();
        let rewrote = !self.switches.sync_noop;
        if rewrote {
            let mut config = self.config.clone();
            config.rewrite(&self.expected());
            self.config = config;
            if self.generation == ApiGeneration::V2 {
                // 2.x rewrites privateKey and shortIds of every inbound it keeps.
                self.reality.missing.remove(&RealityField::PrivateKey);
                self.reality.missing.remove(&RealityField::ShortIds);
            }
        }
        let answer = match self.generation {
            ApiGeneration::V1 => Ok(None),
            ApiGeneration::V2 => {
                // Its own check reads config.json through the stale cache.
                let cached = self.cached_config_uuids();
                if same_set(&cached, &self.expected_uuids()) {
                    Ok(Some(self.validation()))
                } else {
                    Err(ApiError::detail(
                        500,
                        "Configuration sync verification failed",
                    ))
                }
            }
        };
        if self.switches.drift_returns {
            for op in self.drift_log.clone() {
                self.config.apply(&op);
            }
        } else if rewrote {
            self.drift_log.clear();
        }
        answer
    }

    /// 2.x: config.json as `config-status` sees it (read once, then cached until a restart).
    pub fn cached_config_uuids(&mut self) -> Vec<String> {
        match &self.config_cache {
            Some(cached) => cached.clone(),
            None => {
                let fresh = self.config.client_uuids();
                self.config_cache = Some(fresh.clone());
                fresh
            }
        }
    }

    /// `GET /api/system/config-status`.
    pub fn config_status(&mut self, now: &Now) -> ConfigStatus {
        let config = match self.generation {
            ApiGeneration::V1 => self.config.client_uuids(),
            ApiGeneration::V2 => self.cached_config_uuids(),
        };
        let keys = self.expected_uuids();
        ConfigStatus {
            synchronized: same_set(&keys, &config),
            keys_json_count: keys.len(),
            config_json_count: config.len(),
            keys_json_uuids: keys,
            config_json_uuids: config,
            timestamp: now.unix,
        }
    }

    /// 2.x `validate-sync`: config.json read fresh, short_ids compared.
    pub fn validation(&self) -> Validation {
        let keys = self.expected_uuids();
        let config = self.config.client_uuids();
        let missing: Vec<String> = keys
            .iter()
            .filter(|u| !config.contains(u))
            .cloned()
            .collect();
        let extra: Vec<String> = config
            .iter()
            .filter(|u| !keys.contains(u))
            .cloned()
            .collect();
        let mismatches: Vec<ShortIdMismatch> = self
            .keys
            .iter()
            .filter(|r| r.key.is_active)
            .filter_map(|r| {
                let db_short_id = r.key.short_id.as_deref()?;
                let in_config = self.config.short_id_of(&r.key.uuid)?;
                (in_config != Some(db_short_id)).then(|| ShortIdMismatch {
                    uuid: r.key.uuid.clone(),
                    name: r.key.name.clone(),
                    db_short_id: db_short_id.to_string(),
                    config_short_id: in_config.map(str::to_string),
                })
            })
            .collect();
        let uuid_synced = missing.is_empty() && extra.is_empty();
        let short_id_synced = mismatches.is_empty();
        Validation {
            synced: uuid_synced && short_id_synced,
            uuid_synced,
            short_id_synced,
            keys_count: keys.len(),
            config_count: config.len(),
            missing_in_config: missing,
            extra_in_config: extra,
            short_id_mismatches_count: mismatches.len(),
            short_id_mismatches: mismatches,
        }
    }

    /// `POST /api/system/fix-reality-keys` (2.x): the central private key and each key's
    /// short id back into config.json (and, see `XrayConfig::fix_reality`, the default
    /// dest and server names), then Xray restarts.
    pub fn fix_reality_keys(&mut self) {
        self.fix_count += 1;
        let expected: Vec<super::xray::Expected<'_>> = self.expected();
        let mut config = self.config.clone();
        config.fix_reality(&expected);
        self.config = config;
        self.reality.missing.clear();
        self.restart_xray();
    }

    /// 2.x `GET /api/system/xray/config-status`: whether the API inbound is part of the
    /// layout (it is on the stock layout, the one where verify-reality always fails).
    pub fn api_inbound(&self) -> bool {
        self.generation == ApiGeneration::V2 && self.switches.verify_reality_broken
    }

    /// `POST /api/system/verify-reality`: fails on a missing field (and always on the 2.x
    /// layout, whose first inbound is the API inbound); rewrites maxTimeDiff 0 to 600.
    pub fn verify_reality(&mut self) -> Result<(), ApiError> {
        let first_broken = self.generation == ApiGeneration::V2
            && self.config.inbounds().first().is_some_and(|i| {
                i.dest.is_empty() || i.server_names.is_empty() || i.short_ids.is_empty()
            });
        if self.switches.verify_reality_broken || !self.reality.missing.is_empty() || first_broken {
            return Err(ApiError::detail(
                500,
                "Failed to verify Reality settings: 500: Failed to verify Reality settings",
            ));
        }
        if self.reality.max_time_diff == 0 {
            self.reality.max_time_diff = 600;
        }
        Ok(())
    }
}

/// Same uuids, whatever the order.
fn same_set(a: &[String], b: &[String]) -> bool {
    let a: BTreeSet<&String> = a.iter().collect();
    let b: BTreeSet<&String> = b.iter().collect();
    a == b
}
