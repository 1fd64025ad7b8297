//! Typed quota settings: the default policy, the ordered rules and how a key finds its policy.
//! Pure code: matching never touches the network or the clock.

use std::time::Duration;

use super::schedule::Schedule;

/// `[quotas]`: the default policy and the rules that override it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotasConfig {
    /// Policy of every key no rule matches.
    pub defaults: QuotaPolicy,
    /// Ordered rules; the first match wins.
    pub rules: Vec<QuotaRule>,
    /// What the counter of a key seen for the first time counts for.
    pub adopt: AdoptMode,
}

/// How a key seen for the first time (installation, a new key) is taken into the
/// ledger. Its counter then is cumulative since the key was created or last reset,
/// possibly months: keywarden did not see that traffic happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdoptMode {
    /// Usage starts at the first reading: the counter then is only a baseline.
    #[default]
    Baseline,
    /// The counter at first sight counts as this period's usage (for operators who
    /// already reset counters at each period start). Still no reset or delete in the
    /// run that adopts the key.
    Count,
}

impl AdoptMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AdoptMode::Baseline => "baseline",
            AdoptMode::Count => "count",
        }
    }
}

impl QuotasConfig {
    /// The policy of a key: the first rule matching it (and its server), else the defaults.
    pub fn policy_for(&self, server: &str, id: &str, uuid: &str, name: &str) -> &QuotaPolicy {
        self.rules
            .iter()
            .find(|rule| rule.applies_to(server, id, uuid, name))
            .map_or(&self.defaults, |rule| &rule.policy)
    }
}

/// What happens to a key's traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaPolicy {
    /// Bytes allowed per period; `None` means account only.
    pub limit_bytes: Option<u64>,
    /// When the counted traffic starts from zero.
    pub period: Period,
    /// For monthly periods: the day of month a period starts (1..=31, clamped to the month).
    pub period_day: u8,
    /// Percentages of the limit that raise a warning, strictly ascending, each 1..=100.
    pub warn_at: Vec<u8>,
    /// What to do once a key is over its limit.
    pub on_exceed: OnExceed,
    /// With `OnExceed::Delete`: how long a key may stay over its limit before deletion.
    pub grace: Duration,
    /// Resets and deletes of keys under this policy are exempt from the blast-radius guard
    /// (a rule's `allow_mass`; always false for the defaults).
    pub allow_mass: bool,
}

/// Quota period.
#[derive(Debug, Clone, PartialEq)]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
    /// Never resets: a lifetime quota.
    Never,
    /// Resets whenever this schedule fires (in the agent's time zone).
    Cron(Schedule),
}

impl Period {
    /// The name as written in the file ("daily", ..., or the cron expression).
    pub fn as_str(&self) -> &str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Never => "never",
            Period::Cron(schedule) => &schedule.expr,
        }
    }
}

/// What to do with a key over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExceed {
    /// Only alert.
    Alert,
    /// Alert and reset the key's traffic (the key keeps working).
    Reset,
    /// Alert, then delete the key after the grace time (needs `agent.allow_delete`).
    Delete,
}

impl OnExceed {
    pub fn as_str(self) -> &'static str {
        match self {
            OnExceed::Alert => "alert",
            OnExceed::Reset => "reset",
            OnExceed::Delete => "delete",
        }
    }
}

/// `[[quotas.rules]]`, with the defaults already merged into its policy.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaRule {
    /// Which keys the rule is for.
    pub matcher: KeyMatcher,
    /// Only keys of this server (validated to be a configured server).
    pub server: Option<String>,
    /// The defaults with this rule's overrides applied.
    pub policy: QuotaPolicy,
}

impl QuotaRule {
    /// Whether the rule covers this key of this server.
    pub fn applies_to(&self, server: &str, id: &str, uuid: &str, name: &str) -> bool {
        self.server.as_deref().is_none_or(|only| only == server)
            && self.matcher.matches(id, uuid, name)
    }
}

/// How a rule picks keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMatcher {
    /// Glob on the key name: `*` any run of characters, `?` one character; case-sensitive.
    NameGlob(String),
    /// The key's UUID, compared case-insensitively.
    Uuid(String),
    /// The key's id on the server, compared exactly.
    Id(String),
}

impl KeyMatcher {
    /// Whether a key with this id, uuid and name is matched.
    pub fn matches(&self, id: &str, uuid: &str, name: &str) -> bool {
        match self {
            KeyMatcher::NameGlob(pattern) => glob_matches(pattern, name),
            KeyMatcher::Uuid(wanted) => wanted.eq_ignore_ascii_case(uuid),
            KeyMatcher::Id(wanted) => wanted == id,
        }
    }

    /// "name vip-*", "uuid ...", "id 42", for summaries.
    pub fn describe(&self) -> String {
        match self {
            KeyMatcher::NameGlob(pattern) => format!("name {pattern}"),
            KeyMatcher::Uuid(uuid) => format!("uuid {uuid}"),
            KeyMatcher::Id(id) => format!("id {id}"),
        }
    }
}

/// `*` and `?` glob over chars, iterative with one backtrack point (linear in practice,
/// never exponential, whatever the pattern).
fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Position of the last `*` seen and the text position it was tried against.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some('?') => {
                p += 1;
                t += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                // Let the last `*` swallow one more character and retry.
                Some((star, star_t)) => {
                    p = star + 1;
                    t = star_t + 1;
                    backtrack = Some((star, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_star_and_question_mark() {
        let cases = [
            ("vip-*", "vip-alice", true),
            ("vip-*", "vip-", true),
            ("vip-*", "VIP-alice", false),
            ("vip-*", "avip-x", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "aébc", false),
            ("a?c", "aéc", true),
            ("*-test-*", "x-test-y", true),
            ("*-test-*", "x-tes-y", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("**a", "bba", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(glob_matches(pattern, text), want, "{pattern:?} vs {text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn glob_without_wildcards_is_equality(a in "[a-z.-]{0,8}", b in "[a-z.-]{0,8}") {
            proptest::prop_assert_eq!(glob_matches(&a, &b), a == b);
        }

        #[test]
        fn star_around_any_part_matches(prefix in "[a-z]{0,5}", middle in "[a-z]{0,5}", suffix in "[a-z]{0,5}") {
            let text = format!("{prefix}{middle}{suffix}");
            let around_middle = format!("*{middle}*");
            let after_prefix = format!("{prefix}*");
            proptest::prop_assert!(glob_matches(&around_middle, &text));
            proptest::prop_assert!(glob_matches(&after_prefix, &text));
            let questions = "?".repeat(text.chars().count());
            proptest::prop_assert!(glob_matches(&questions, &text));
        }
    }

    #[test]
    fn glob_has_no_exponential_blowup() {
        let text = "a".repeat(5000);
        assert!(!glob_matches("*a*a*a*a*a*a*a*a*b", &text));
    }

    #[test]
    fn matcher_kinds() {
        let uuid = KeyMatcher::Uuid("0f8e1c2a-1111-4222-8333-444455556666".into());
        assert!(uuid.matches("1", "0F8E1C2A-1111-4222-8333-444455556666", "n"));
        assert!(!uuid.matches("1", "0f8e1c2a-1111-4222-8333-444455556667", "n"));
        let id = KeyMatcher::Id("42".into());
        assert!(id.matches("42", "u", "n"));
        assert!(!id.matches("420", "u", "n"));
        let name = KeyMatcher::NameGlob("team-?".into());
        assert!(name.matches("1", "u", "team-a"));
        assert!(!name.matches("team-a", "u", "team-ab"));
    }

    fn policy(limit: u64) -> QuotaPolicy {
        QuotaPolicy {
            limit_bytes: Some(limit),
            period: Period::Monthly,
            period_day: 1,
            warn_at: vec![80, 95],
            on_exceed: OnExceed::Alert,
            grace: Duration::from_secs(86_400),
            allow_mass: false,
        }
    }

    #[test]
    fn policy_for_takes_the_first_matching_rule() {
        let quotas = QuotasConfig {
            adopt: AdoptMode::Baseline,
            defaults: policy(1),
            rules: vec![
                QuotaRule {
                    matcher: KeyMatcher::NameGlob("vip-*".into()),
                    server: Some("fra-1".into()),
                    policy: policy(2),
                },
                QuotaRule {
                    matcher: KeyMatcher::NameGlob("vip-*".into()),
                    server: None,
                    policy: policy(3),
                },
                QuotaRule {
                    matcher: KeyMatcher::NameGlob("*".into()),
                    server: Some("ams-2".into()),
                    policy: policy(4),
                },
            ],
        };
        let limit = |server, name| quotas.policy_for(server, "7", "u", name).limit_bytes;
        assert_eq!(
            limit("fra-1", "vip-a"),
            Some(2),
            "server-specific rule first"
        );
        assert_eq!(
            limit("ams-2", "vip-a"),
            Some(3),
            "earlier rule wins over later"
        );
        assert_eq!(limit("ams-2", "bob"), Some(4));
        assert_eq!(limit("fra-1", "bob"), Some(1), "no rule: defaults");
        assert_eq!(limit("other", "vip-a"), Some(3));
    }
}
