//! Which quota rule covers a key: `[[quotas.rules]]` in order, first match wins, else the
//! `[quotas]` defaults. Pure code; the matching itself is `config::QuotaRule::applies_to`.

use serde::Serialize;

use crate::config::{QuotaPolicy, QuotasConfig};

/// The rule a key's policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RuleRef {
    /// No rule matched: `[quotas]`.
    Default,
    /// `[[quotas.rules]]` at this index (0-based).
    Rule(usize),
}

impl RuleRef {
    /// "default" or "rule 2 (name vip-*)": rules numbered from 1, as `validate` prints them.
    pub fn describe(self, quotas: &QuotasConfig) -> String {
        match self {
            RuleRef::Default => "default".to_owned(),
            RuleRef::Rule(index) => match quotas.rules.get(index) {
                Some(rule) => format!("rule {} ({})", index + 1, rule.matcher.describe()),
                None => format!("rule {}", index + 1),
            },
        }
    }

    /// The policy this reference names (the defaults if the index is stale).
    pub fn policy(self, quotas: &QuotasConfig) -> &QuotaPolicy {
        match self {
            RuleRef::Rule(index) => quotas
                .rules
                .get(index)
                .map_or(&quotas.defaults, |rule| &rule.policy),
            RuleRef::Default => &quotas.defaults,
        }
    }
}

/// The first rule covering this key of `server`, else the defaults.
pub fn matching(quotas: &QuotasConfig, server: &str, id: &str, uuid: &str, name: &str) -> RuleRef {
    quotas
        .rules
        .iter()
        .position(|rule| rule.applies_to(server, id, uuid, name))
        .map_or(RuleRef::Default, RuleRef::Rule)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{KeyMatcher, OnExceed, Period, QuotaRule};

    fn policy(limit: u64) -> QuotaPolicy {
        QuotaPolicy {
            limit_bytes: Some(limit),
            period: Period::Monthly,
            period_day: 1,
            warn_at: vec![80, 95],
            on_exceed: OnExceed::Alert,
            grace: Duration::from_secs(3600),
            allow_mass: false,
        }
    }

    fn rule(matcher: KeyMatcher, server: Option<&str>, limit: u64) -> QuotaRule {
        QuotaRule {
            matcher,
            server: server.map(str::to_owned),
            policy: policy(limit),
        }
    }

    const UUID: &str = "0f8e1c2a-5b6d-4e7f-8a9b-0c1d2e3f4a5b";

    #[test]
    fn first_matching_rule_wins_else_defaults() {
        let quotas = QuotasConfig {
            adopt: crate::config::AdoptMode::Baseline,
            defaults: policy(1),
            rules: vec![
                rule(KeyMatcher::NameGlob("vip-*".into()), Some("fra-1"), 2),
                rule(KeyMatcher::Uuid(UUID.into()), None, 3),
                rule(KeyMatcher::Id("42".into()), Some("ams-2"), 4),
                rule(KeyMatcher::NameGlob("vip-*".into()), None, 5),
                rule(KeyMatcher::NameGlob("*".into()), Some("ams-2"), 6),
            ],
        };
        // (server, id, uuid, name) -> rule
        let cases = [
            ("fra-1", "1", "u", "vip-anna", RuleRef::Rule(0)),
            ("ams-2", "1", "u", "vip-anna", RuleRef::Rule(3)),
            (
                "fra-1",
                "1",
                &UUID.to_uppercase(),
                "vip-anna",
                RuleRef::Rule(0),
            ),
            ("fra-1", "1", &UUID.to_uppercase(), "bob", RuleRef::Rule(1)),
            ("ams-2", "42", "u", "bob", RuleRef::Rule(2)),
            ("fra-1", "42", "u", "bob", RuleRef::Default),
            ("ams-2", "7", "u", "bob", RuleRef::Rule(4)),
            ("fra-1", "7", "u", "VIP-anna", RuleRef::Default),
        ];
        for (server, id, uuid, name, want) in cases {
            let got = matching(&quotas, server, id, uuid, name);
            assert_eq!(got, want, "{server} {id} {uuid} {name}");
            // The same answer as the config's own lookup.
            assert_eq!(
                got.policy(&quotas),
                quotas.policy_for(server, id, uuid, name)
            );
        }
        assert_eq!(RuleRef::Default.describe(&quotas), "default");
        assert_eq!(RuleRef::Rule(0).describe(&quotas), "rule 1 (name vip-*)");
        assert_eq!(RuleRef::Rule(2).describe(&quotas), "rule 3 (id 42)");
    }
}
