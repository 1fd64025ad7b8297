//! Rejections and secrets of the configuration loader: each test asserts the key path, the
//! line and a hint of what would be valid. Env lookups are injected: tests run in parallel
//! and must never touch the process environment.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keywarden::config::{
    self, ConfigErrors, ConfigProblem, CounterResets, KeyMatcher, Loaded, OnExceed, Period,
    Severity, SmtpSecurity, WebhookFormat,
};

const ORIGIN: &str = "/etc/keywarden/agent.toml";

/// One valid server; most tests append to this.
const BASE: &str = r#"
[[servers]]
name = "fra-1"
url = "https://fra-1.example.net/api"
api_key_env = "FRA1_API_KEY"
"#;

fn env_with(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn default_env() -> impl Fn(&str) -> Option<String> {
    env_with(&[
        ("FRA1_API_KEY", "fra1-key"),
        ("AMS2_API_KEY", "ams2-key"),
        ("SMTP_PASSWORD", "smtp-pass"),
        ("HOOK_SECRET", "hook-secret"),
    ])
}

fn load_at(text: &str, origin: &Path) -> Result<Loaded, ConfigErrors> {
    config::from_str_with_env(text, origin, &default_env())
}

fn load(text: &str) -> Result<Loaded, ConfigErrors> {
    load_at(text, Path::new(ORIGIN))
}

fn problems(text: &str) -> Vec<ConfigProblem> {
    match load(text) {
        Ok(loaded) => panic!("expected problems, got a valid config: {:?}", loaded.config),
        Err(errors) => errors.problems,
    }
}

/// The single problem at `path`, failing with the full list otherwise.
fn problem_at(text: &str, path: &str) -> ConfigProblem {
    let all = problems(text);
    let matching: Vec<_> = all.iter().filter(|p| p.path == path).collect();
    assert_eq!(
        matching.len(),
        1,
        "one problem at {path} expected in:\n{}",
        list(&all)
    );
    matching[0].clone()
}

fn list(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// 1-based number of the first line containing `needle` (after `after` lines, to find a
/// second occurrence).
fn line_of(text: &str, needle: &str, occurrence: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.contains(needle))
        .nth(occurrence)
        .map(|(index, _)| index + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
}

fn assert_hint(problem: &ConfigProblem, hints: &[&str]) {
    for hint in hints {
        assert!(
            problem.message.contains(hint),
            "message lacks {hint:?}: {problem}"
        );
    }
}

#[test]
fn minimal_config_takes_every_default() {
    let loaded = load(BASE).expect("valid");
    let config = loaded.config;
    assert_eq!(config.agent.state_dir, PathBuf::from("/var/lib/keywarden"));
    assert_eq!(config.agent.timezone, chrono_tz::Tz::UTC);
    assert!(!config.agent.dry_run && !config.agent.allow_delete);
    assert_eq!(
        config.agent.listen,
        Some("127.0.0.1:9477".parse().expect("addr"))
    );
    let server = &config.servers[0];
    assert_eq!(server.url.as_str(), "https://fra-1.example.net/api");
    assert_eq!(server.api_key.expose(), "fra1-key");
    assert_eq!(server.timeout, Duration::from_secs(15));
    assert_eq!(server.action_timeout, Duration::from_secs(60));
    assert_eq!(server.concurrency, 8);
    assert!(server.skip_jobs.is_empty());
    assert_eq!(server.counter_resets, CounterResets::Auto);
    assert_eq!(server.ca_file, None);
    assert_eq!(config.jobs.health.schedule.expr, "*/30 * * * * *");
    assert_eq!(config.jobs.health.failures_before_alert, 3);
    assert_eq!(config.jobs.config_sync.schedule.expr, "0 */5 * * * *");
    assert!(config.jobs.config_sync.auto_sync);
    assert_eq!(config.jobs.config_sync.confirmations, 2);
    assert_eq!(config.jobs.config_sync.max_syncs_per_hour, 4);
    assert!(config.jobs.config_sync.verify_reality_after_sync);
    assert_eq!(config.jobs.reality.schedule.expr, "0 7 * * * *");
    assert_eq!(config.jobs.quota.schedule.expr, "0 */10 * * * *");
    let quota = &config.quotas.defaults;
    assert_eq!(quota.limit_bytes, None);
    assert_eq!(quota.period, Period::Monthly);
    assert_eq!(quota.period_day, 1);
    assert_eq!(quota.warn_at, vec![80, 95]);
    assert_eq!(quota.on_exceed, OnExceed::Alert);
    assert_eq!(quota.grace, Duration::from_secs(86_400));
    assert!(config.quotas.rules.is_empty());
    let alerts = &config.alerts;
    assert_eq!(alerts.min_severity, Severity::Warning);
    assert_eq!(alerts.repeat_interval, Duration::from_secs(4 * 3600));
    assert!(alerts.send_resolved);
    assert_eq!(alerts.group_wait, Duration::from_secs(10));
    assert_eq!(alerts.max_age, Duration::from_secs(86_400));
    assert_eq!(alerts.heartbeat_url, None);
    assert!(alerts.email.is_empty() && alerts.webhook.is_empty());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn sink_defaults_and_merged_rules() {
    let text = format!(
        r#"{BASE}
[agent]
allow_delete = true
[quotas]
limit = "100 GiB"
on_exceed = "delete"
[[quotas.rules]]
match_name = "vip-*"
server = "fra-1"
limit = "1 TiB"
[[quotas.rules]]
match_uuid = "0F8E1C2A-5B6D-4E7F-8A9B-0C1D2E3F4A5B"
limit = "unlimited"
period = "0 0 0 * * MON"
[alerts]
min_severity = "info"
[[alerts.email]]
name = "mail"
host = "smtp.example.net"
from = "keywarden <alerts@example.net>"
to = ["admin@example.net"]
[[alerts.webhook]]
name = "hook"
url = "https://hooks.example.net/x"
"#
    );
    let config = load(&text).expect("valid").config;
    let vip = &config.quotas.rules[0];
    assert_eq!(vip.matcher, KeyMatcher::NameGlob("vip-*".into()));
    assert_eq!(vip.server.as_deref(), Some("fra-1"));
    assert_eq!(vip.policy.limit_bytes, Some(1 << 40));
    assert_eq!(
        vip.policy.on_exceed,
        OnExceed::Delete,
        "inherited from [quotas]"
    );
    let by_uuid = &config.quotas.rules[1];
    assert_eq!(
        by_uuid.policy.limit_bytes, None,
        "\"unlimited\" lifts the default"
    );
    assert!(matches!(&by_uuid.policy.period, Period::Cron(s) if s.expr == "0 0 0 * * MON"));
    let uuid = "0f8e1c2a-5b6d-4e7f-8a9b-0c1d2e3f4a5b";
    let rule = keywarden::quota::rules::matching(&config.quotas, "fra-1", "1", uuid, "bob");
    let policy = rule.policy(&config.quotas);
    assert_eq!(policy.limit_bytes, None);
    let email = &config.alerts.email[0];
    assert_eq!((email.port, email.security), (587, SmtpSecurity::Starttls));
    assert_eq!(email.timeout, Duration::from_secs(30));
    assert_eq!(
        email.min_severity,
        Severity::Info,
        "inherits alerts.min_severity"
    );
    let hook = &config.alerts.webhook[0];
    assert_eq!(hook.format, WebhookFormat::Json);
    assert_eq!(hook.timeout, Duration::from_secs(10));
    assert!(hook.headers.is_empty());
    assert_eq!(hook.min_severity, Severity::Info);
}

#[test]
fn unknown_key_names_the_allowed_keys() {
    let text = format!("{BASE}api_key_evn = \"X\"\n");
    let problem = problem_at(&text, "servers[0].api_key_evn");
    assert_eq!(problem.line, Some(line_of(&text, "api_key_evn", 0)));
    assert_eq!(problem.column, Some(1));
    assert_hint(
        &problem,
        &[
            "unknown key",
            "did you mean \"api_key_env\"",
            "allowed: name, url, api_key",
        ],
    );
}

#[test]
fn every_unknown_key_is_reported_at_once() {
    let text = format!("[agent]\ntimezon = \"UTC\"\n{BASE}\n[alerts]\nmin_sev = \"info\"\n");
    let all = problems(&text);
    let paths: Vec<_> = all.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["agent.timezon", "alerts.min_sev"], "{}", list(&all));
}

#[test]
fn duplicate_server_name() {
    let text = format!("{BASE}{}", BASE.replace("fra-1.example", "other.example"));
    let problem = problem_at(&text, "servers[1].name");
    assert_eq!(problem.line, Some(line_of(&text, "name = \"fra-1\"", 1)));
    let first = line_of(&text, "name = \"fra-1\"", 0);
    assert_hint(
        &problem,
        &[
            "duplicate server name \"fra-1\"",
            &format!("line {first}"),
            "unique",
        ],
    );
}

#[test]
fn two_api_key_sources() {
    let text = format!("{BASE}api_key = \"inline\"\n");
    let problem = problem_at(&text, "servers[0].api_key_env");
    assert_eq!(problem.line, Some(line_of(&text, "api_key_env", 0)));
    assert_hint(
        &problem,
        &[
            "conflicts with api_key",
            "only one of api_key_env, api_key_file or api_key",
        ],
    );
}

#[test]
fn no_api_key_source() {
    let text = BASE.replace("api_key_env = \"FRA1_API_KEY\"\n", "");
    let problem = problem_at(&text, "servers[0]");
    assert_eq!(problem.line, Some(line_of(&text, "[[servers]]", 0)));
    assert_hint(
        &problem,
        &["missing api_key", "api_key_env", "api_key_file"],
    );
}

#[test]
fn bad_cron() {
    let text = format!("{BASE}[jobs.health]\nschedule = \"*/5 * * * *\"\n");
    let problem = problem_at(&text, "jobs.health.schedule");
    assert_eq!(problem.line, Some(line_of(&text, "schedule", 0)));
    assert_eq!(problem.column, Some(12), "points at the value");
    assert_hint(
        &problem,
        &[
            "seconds field is required",
            "sec min hour day-of-month month day-of-week",
        ],
    );
}

#[test]
fn bad_size() {
    let text = format!("{BASE}[[quotas.rules]]\nmatch_name = \"*\"\nlimit = \"100 GB/s\"\n");
    let problem = problem_at(&text, "quotas.rules[0].limit");
    assert_eq!(problem.line, Some(line_of(&text, "limit", 0)));
    assert_hint(
        &problem,
        &["invalid size \"100 GB/s\"", "KiB", "\"100 GiB\""],
    );
}

#[test]
fn warn_at_outside_1_to_100() {
    let text = format!("{BASE}[quotas]\nwarn_at = [80, 120]\n");
    let problem = problem_at(&text, "quotas.warn_at[1]");
    assert_eq!(problem.line, Some(line_of(&text, "warn_at", 0)));
    assert_hint(&problem, &["120", "between 1 and 100"]);
    let text = format!("{BASE}[quotas]\nwarn_at = [0]\n");
    assert_hint(
        &problem_at(&text, "quotas.warn_at[0]"),
        &["between 1 and 100"],
    );
}

#[test]
fn warn_at_unsorted() {
    let text = format!("{BASE}[quotas]\n\nwarn_at = [95, 80]\n");
    let problem = problem_at(&text, "quotas.warn_at");
    assert_eq!(problem.line, Some(line_of(&text, "warn_at", 0)));
    assert_hint(&problem, &["[95, 80]", "ascending", "[80, 95]"]);
}

#[test]
fn delete_without_allow_delete_in_defaults() {
    let text = format!("{BASE}[quotas]\nlimit = \"1 GiB\"\non_exceed = \"delete\"\n");
    let problem = problem_at(&text, "quotas.on_exceed");
    assert_eq!(problem.line, Some(line_of(&text, "on_exceed", 0)));
    assert_hint(
        &problem,
        &["agent.allow_delete = true", "\"alert\" or \"reset\""],
    );
    // The same file is fine once deletion is allowed.
    load(&format!("[agent]\nallow_delete = true\n{text}")).expect("valid with allow_delete");
}

#[test]
fn delete_without_allow_delete_in_a_rule() {
    let text = format!(
        "{BASE}[[quotas.rules]]\nmatch_name = \"a\"\n[[quotas.rules]]\nmatch_id = 42\nlimit = 10\non_exceed = \"delete\"\n"
    );
    let problem = problem_at(&text, "quotas.rules[1].on_exceed");
    assert_eq!(problem.line, Some(line_of(&text, "on_exceed", 0)));
    assert_hint(&problem, &["agent.allow_delete = true"]);
}

#[test]
fn allow_mass_is_a_rule_switch_off_by_default() {
    let text = format!(
        "{BASE}[quotas]\nlimit = \"1 GiB\"\non_exceed = \"reset\"\n[[quotas.rules]]\nmatch_name = \"trial-*\"\nallow_mass = true\n[[quotas.rules]]\nmatch_name = \"watch-*\"\non_exceed = \"alert\"\nallow_mass = true\n"
    );
    let loaded = load(&text).expect("valid");
    let quotas = &loaded.config.quotas;
    assert!(!quotas.defaults.allow_mass);
    assert!(quotas.rules[0].policy.allow_mass);
    assert!(quotas.rules[1].policy.allow_mass);
    let warning = loaded
        .warnings
        .iter()
        .find(|w| w.contains("quotas.rules[1].allow_mass"))
        .unwrap_or_else(|| panic!("{:?}", loaded.warnings));
    assert!(warning.contains("has no effect"), "{warning}");
    assert!(
        !loaded
            .warnings
            .iter()
            .any(|w| w.contains("rules[0].allow_mass")),
        "{:?}",
        loaded.warnings
    );
    let problem = problem_at(
        &format!("{BASE}[[quotas.rules]]\nmatch_name = \"a\"\nallow_mass = \"yes\"\n"),
        "quotas.rules[0].allow_mass",
    );
    assert_hint(&problem, &["expected true or false, found a string"]);
}

#[test]
fn unknown_time_zone() {
    let text = format!("[agent]\ntimezone = \"europe/berlin\"\n{BASE}");
    let problem = problem_at(&text, "agent.timezone");
    assert_eq!(problem.line, Some(2));
    assert_hint(
        &problem,
        &[
            "unknown time zone",
            "did you mean \"Europe/Berlin\"",
            "IANA",
        ],
    );
}

const EMAIL: &str = r#"
[[alerts.email]]
name = "ops-mail"
host = "smtp.example.net"
from = "keywarden <alerts@example.net>"
"#;

#[test]
fn email_without_recipients() {
    let text = format!("{BASE}{EMAIL}to = []\n");
    let problem = problem_at(&text, "alerts.email[0].to");
    assert_eq!(problem.line, Some(line_of(&text, "to = []", 0)));
    assert_hint(&problem, &["at least one recipient", "admin@example.net"]);
    // Omitting `to` entirely is reported against the table.
    let text = format!("{BASE}{EMAIL}");
    let problem = problem_at(&text, "alerts.email[0].to");
    assert_eq!(problem.line, Some(line_of(&text, "[[alerts.email]]", 0)));
}

#[test]
fn telegram_without_chat_id() {
    let text = format!(
        "{BASE}\n[[alerts.webhook]]\nname = \"tg\"\nurl = \"https://api.telegram.org/bot123:SECRET/sendMessage\"\nformat = \"telegram\"\n"
    );
    let problem = problem_at(&text, "alerts.webhook[0].chat_id");
    assert_eq!(problem.line, Some(line_of(&text, "[[alerts.webhook]]", 0)));
    assert_hint(
        &problem,
        &["format = \"telegram\" needs chat_id", "-1001234567890"],
    );
    assert!(!problem.to_string().contains("SECRET"));
}

#[test]
fn unreadable_secret_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = dir.path().join("agent.toml");
    let text = BASE.replace(
        "api_key_env = \"FRA1_API_KEY\"",
        "api_key_file = \"keys/missing.key\"",
    );
    let errors = load_at(&text, &origin).expect_err("missing file");
    let problem = &errors.problems[0];
    assert_eq!(problem.path, "servers[0].api_key_file");
    assert_eq!(problem.line, Some(line_of(&text, "api_key_file", 0)));
    let expected_path = dir.path().join("keys/missing.key");
    assert_hint(
        problem,
        &[
            "cannot read secret file",
            &expected_path.display().to_string(),
            "No such file",
        ],
    );
}

#[test]
fn secret_file_is_read_relative_to_the_config_and_trimmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("fra1.key"), "from-a-file\n").expect("write");
    let text = BASE.replace(
        "api_key_env = \"FRA1_API_KEY\"",
        "api_key_file = \"fra1.key\"",
    );
    let config = load_at(&text, &dir.path().join("agent.toml"))
        .expect("valid")
        .config;
    assert_eq!(config.servers[0].api_key.expose(), "from-a-file");
    let text = BASE.replace(
        "api_key_env = \"FRA1_API_KEY\"",
        "api_key_file = \"empty.key\"",
    );
    std::fs::write(dir.path().join("empty.key"), "\n").expect("write");
    let errors = load_at(&text, &dir.path().join("agent.toml")).expect_err("empty");
    assert!(errors.problems[0].message.contains("is empty"), "{errors}");
}

#[test]
fn unset_and_empty_env_variables() {
    let text = BASE.replace("FRA1_API_KEY", "NOT_SET_ANYWHERE");
    let problem = problem_at(&text, "servers[0].api_key_env");
    assert_eq!(problem.line, Some(line_of(&text, "api_key_env", 0)));
    assert_hint(
        &problem,
        &["environment variable NOT_SET_ANYWHERE is not set"],
    );
    let env = env_with(&[("FRA1_API_KEY", "")]);
    let errors = config::from_str_with_env(BASE, Path::new(ORIGIN), &env).expect_err("empty");
    assert!(
        errors.problems[0].message.contains("FRA1_API_KEY is empty"),
        "{errors}"
    );
}

#[test]
fn bare_number_duration_matches_the_documented_message() {
    let text = format!("{BASE}timeout = \"15\"\n");
    let errors = load(&text).expect_err("bare number");
    let line = line_of(&text, "timeout", 0);
    assert_eq!(
        errors.to_string(),
        format!(
            "{ORIGIN}:{line}:11: servers[0].timeout: invalid duration \"15\" (a number needs a unit: \"15s\", \"15m\", \"15h\", ...)"
        )
    );
}

#[test]
fn type_errors_carry_line_and_key_path() {
    let text = format!("{BASE}concurrency = \"eight\"\n");
    let problem = problem_at(&text, "servers[0].concurrency");
    assert_eq!(problem.line, Some(line_of(&text, "concurrency", 0)));
    assert_hint(
        &problem,
        &["invalid type: expected a whole number, found a string"],
    );
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let text = format!("{BASE}timeout = 15s\n");
    let all = problems(&text);
    assert_eq!(
        all[0].line,
        Some(line_of(&text, "timeout", 0)),
        "{}",
        list(&all)
    );
    assert_eq!(all[0].column, Some(11));
}

#[test]
fn no_servers() {
    let problem = problem_at("[agent]\ndry_run = true\n", "servers");
    assert_eq!(problem.line, None);
    assert_hint(&problem, &["at least one [[servers]]", "api_key_env"]);
}

#[test]
fn five_different_problems_are_reported_at_once() {
    let text = r#"
[agent]
timezone = "Mars/Olympus"

[[servers]]
name = "FRA 1"
url = "ftp://fra-1.example.net/api"
api_key_env = "FRA1_API_KEY"

[quotas]
warn_at = [95, 80]

[[alerts.webhook]]
name = "tg"
url = "https://api.telegram.org/bot1:x/sendMessage"
format = "telegram"
"#;
    let all = problems(text);
    let paths: Vec<_> = all.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "agent.timezone",
            "servers[0].name",
            "servers[0].url",
            "quotas.warn_at",
            "alerts.webhook[0].chat_id",
        ],
        "{}",
        list(&all)
    );
    let lines: Vec<_> = all.iter().map(|p| p.line).collect();
    assert_eq!(lines, [Some(3), Some(6), Some(7), Some(11), Some(13)]);
    let display = ConfigErrors { problems: all }.to_string();
    assert_eq!(
        display.lines().count(),
        5,
        "one problem per line:\n{display}"
    );
}

#[test]
fn more_rejections() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "[agent]\nlisten = \"localhost\"\n",
            "agent.listen",
            &["127.0.0.1:9477", "\"\" to disable"],
        ),
        (
            "[agent]\nlog_format = \"xml\"\n",
            "agent.log_format",
            &["\"auto\", \"text\", \"json\""],
        ),
        (
            "[agent]\nstate_dir = \"\"\n",
            "agent.state_dir",
            &["must not be empty"],
        ),
        (
            "[jobs.config_sync]\nconfirmations = 0\n",
            "jobs.config_sync.confirmations",
            &["expected 1 to"],
        ),
        (
            "[jobs.health]\nfailures_before_alert = -1\n",
            "jobs.health.failures_before_alert",
            &["expected 1 to"],
        ),
        (
            "[quotas]\nperiod_day = 32\n",
            "quotas.period_day",
            &["expected 1 to 31"],
        ),
        (
            "[quotas]\nperiod = \"monthy\"\n",
            "quotas.period",
            &["\"monthly\"", "cron"],
        ),
        (
            "[quotas]\nlimit = 0\n",
            "quotas.limit",
            &["more than 0", "unlimited"],
        ),
        ("[quotas]\ngrace = 24\n", "quotas.grace", &["\"24h\""]),
        (
            "[[quotas.rules]]\nlimit = 5\n",
            "quotas.rules[0]",
            &["exactly one of match_name"],
        ),
        (
            "[[quotas.rules]]\nmatch_name = \"a\"\nmatch_id = \"1\"\n",
            "quotas.rules[0].match_id",
            &["conflicts with match_name"],
        ),
        (
            "[[quotas.rules]]\nmatch_uuid = \"nope\"\n",
            "quotas.rules[0].match_uuid",
            &["8-4-4-4-12"],
        ),
        (
            "[[quotas.rules]]\nmatch_name = \"a\"\nserver = \"nyc-3\"\n",
            "quotas.rules[0].server",
            &["no server named \"nyc-3\"", "fra-1"],
        ),
        (
            "[alerts]\nmin_severity = \"debug\"\n",
            "alerts.min_severity",
            &["\"info\", \"warning\", \"critical\""],
        ),
        (
            "[alerts]\nheartbeat_url = \"hc-ping.com/abc\"\n",
            "alerts.heartbeat_url",
            &["http:// or https://"],
        ),
        (
            "[alerts]\nrepeat_interval = \"0s\"\n",
            "alerts.repeat_interval",
            &["more than zero"],
        ),
        (
            "[[alerts.email]]\nname = \"m\"\nhost = \"smtp.example.net\"\nport = 70000\nfrom = \"a@b\"\nto = [\"c@d\"]\n",
            "alerts.email[0].port",
            &["expected 1 to 65535"],
        ),
        (
            "[[alerts.email]]\nname = \"m\"\nhost = \"smtp.example.net\"\nto = [\"c@d\"]\n",
            "alerts.email[0].from",
            &["missing", "keywarden <alerts@example.net>"],
        ),
        (
            "[[alerts.email]]\nname = \"m\"\nhost = \"smtp.example.net\"\nfrom = \"a@b\"\nto = [\"nobody\"]\n",
            "alerts.email[0].to[0]",
            &["not a mail address"],
        ),
        (
            "[[alerts.email]]\nname = \"m\"\nhost = \"h\"\nfrom = \"a@b\"\nto = [\"c@d\"]\npassword_env = \"SMTP_PASSWORD\"\n",
            "alerts.email[0].username",
            &["no username"],
        ),
        (
            "[[alerts.webhook]]\nname = \"w\"\nurl = \"https://x.example/h\"\nchat_id = \"1\"\n",
            "alerts.webhook[0].chat_id",
            &["telegram\" only"],
        ),
        (
            "[[alerts.webhook]]\nname = \"w\"\nurl = \"https://x.example/h\"\nformat = \"slack\"\nsecret_env = \"HOOK_SECRET\"\n",
            "alerts.webhook[0]",
            &["format = \"json\" only"],
        ),
        (
            "[[alerts.webhook]]\nname = \"w\"\nurl = \"https://x.example/h\"\nheaders = { \"Bad Header\" = \"v\" }\n",
            "alerts.webhook[0].headers.Bad Header",
            &["header name"],
        ),
        (
            "[[alerts.webhook]]\nname = \"w\"\nurl = \"https://x.example/h\"\n[[alerts.email]]\nname = \"w\"\nhost = \"h\"\nfrom = \"a@b\"\nto = [\"c@d\"]\n",
            "alerts.webhook[0].name",
            &["duplicate sink name \"w\"", "across email and webhook"],
        ),
    ];
    for (snippet, path, hints) in cases {
        let text = format!("{BASE}{snippet}");
        let problem = problem_at(&text, path);
        assert!(problem.line.is_some(), "{problem}");
        assert_hint(&problem, hints);
    }
}

#[test]
fn server_rejections() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "name = \"fra-1\"",
            "name = \"Fra_1!\"",
            "servers[0].name",
            &["a-z, 0-9"],
        ),
        (
            "url = \"https://fra-1.example.net/api\"",
            "url = \"fra-1.example.net\"",
            "servers[0].url",
            &["https://fra-1.example.net/api"],
        ),
        (
            "url = \"https://fra-1.example.net/api\"",
            "url = \"https://u:p@fra-1.example.net/api\"",
            "servers[0].url",
            &["credentials"],
        ),
        (
            "api_key_env = \"FRA1_API_KEY\"",
            "api_key_env = \"FRA1_API_KEY\"\ntimeout = \"0s\"",
            "servers[0].timeout",
            &["more than zero"],
        ),
        (
            "api_key_env = \"FRA1_API_KEY\"",
            "api_key_env = \"FRA1_API_KEY\"\nconcurrency = 65",
            "servers[0].concurrency",
            &["1 to 64"],
        ),
        (
            "api_key_env = \"FRA1_API_KEY\"",
            "api_key_env = \"FRA1_API_KEY\"\nskip_jobs = [\"realty\"]",
            "servers[0].skip_jobs[0]",
            &["\"health\", \"config_sync\", \"reality\", \"quota\""],
        ),
        (
            "api_key_env = \"FRA1_API_KEY\"",
            "api_key_env = \"FRA1_API_KEY\"\ncounter_resets = \"sometimes\"",
            "servers[0].counter_resets",
            &["\"auto\", \"always\", \"never\""],
        ),
        (
            "api_key_env = \"FRA1_API_KEY\"",
            "api_key_env = \"FRA1_API_KEY\"\nca_file = \"/nonexistent/ca.pem\"",
            "servers[0].ca_file",
            &["cannot read CA file /nonexistent/ca.pem"],
        ),
    ];
    for (from, to, path, hints) in cases {
        let text = BASE.replace(from, to);
        let problem = problem_at(&text, path);
        assert!(problem.line.is_some(), "{problem}");
        assert_hint(&problem, hints);
    }
}

#[test]
fn ca_file_must_look_like_pem() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").expect("write");
    let mut good = std::fs::File::create(dir.path().join("good.pem")).expect("create");
    writeln!(
        good,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    )
    .expect("write");
    let origin = dir.path().join("agent.toml");
    let text = format!("{BASE}ca_file = \"bad.pem\"\n");
    let errors = load_at(&text, &origin).expect_err("not PEM");
    assert!(
        errors.problems[0].message.contains("BEGIN CERTIFICATE"),
        "{errors}"
    );
    let text = format!("{BASE}ca_file = \"good.pem\"\n");
    let config = load_at(&text, &origin).expect("PEM").config;
    assert_eq!(config.servers[0].ca_file, Some(dir.path().join("good.pem")));
}

#[test]
fn url_is_normalised_and_warned_about() {
    let text = BASE.replace("example.net/api", "example.net/api/");
    let loaded = load(&text).expect("valid");
    assert_eq!(
        loaded.config.servers[0].url.as_str(),
        "https://fra-1.example.net/api"
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let text = BASE.replace("example.net/api", "example.net/");
    let loaded = load(&text).expect("valid");
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("servers[0].url: path \"/\" does not end in /api"));
}

#[test]
fn warnings_for_plaintext_smtp_auth() {
    let text = format!(
        "{BASE}{EMAIL}to = [\"a@b\"]\nsecurity = \"none\"\nusername = \"u\"\npassword_env = \"SMTP_PASSWORD\"\n"
    );
    let loaded = load(&text).expect("valid");
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("alerts.email[0].security") && w.contains("clear text")),
        "{:?}",
        loaded.warnings
    );
    let loopback = text.replace("smtp.example.net", "127.0.0.1");
    assert!(load(&loopback).expect("valid").warnings.is_empty());
}

/// Every secret source, with values that must never show up in Debug output.
#[test]
fn debug_of_the_whole_config_never_shows_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ams2.key"), "FILE-API-KEY-VALUE\n").expect("write");
    let text = r#"
[[servers]]
name = "fra-1"
url = "https://fra-1.example.net/api"
api_key = "INLINE-API-KEY-VALUE"

[[servers]]
name = "ams-2"
url = "https://ams-2.example.net/api"
api_key_file = "ams2.key"

[[servers]]
name = "nyc-3"
url = "https://nyc-3.example.net/api"
api_key_env = "NYC3_API_KEY"

[alerts]
heartbeat_url = "https://hc-ping.com/HEARTBEAT-UUID-VALUE"

[[alerts.email]]
name = "mail"
host = "smtp.example.net"
username = "alerts@example.net"
password_env = "SMTP_PASSWORD"
from = "alerts@example.net"
to = ["admin@example.net"]

[[alerts.webhook]]
name = "signed"
url = "https://hooks.example.net/in"
secret = "WEBHOOK-SECRET-VALUE"
headers = { Authorization = "Bearer HEADER-TOKEN-VALUE" }

[[alerts.webhook]]
name = "tg"
url = "https://api.telegram.org/bot123456:TELEGRAM-TOKEN-VALUE/sendMessage"
format = "telegram"
chat_id = -1001234567890
"#;
    let env = env_with(&[
        ("NYC3_API_KEY", "ENV-API-KEY-VALUE"),
        ("SMTP_PASSWORD", "SMTP-PASSWORD-VALUE"),
    ]);
    let config = config::from_str_with_env(text, &dir.path().join("agent.toml"), &env)
        .expect("valid")
        .config;
    let debug = format!("{config:?} {config:#?}");
    for secret in [
        "INLINE-API-KEY-VALUE",
        "FILE-API-KEY-VALUE",
        "ENV-API-KEY-VALUE",
        "SMTP-PASSWORD-VALUE",
        "WEBHOOK-SECRET-VALUE",
        "HEADER-TOKEN-VALUE",
        "TELEGRAM-TOKEN-VALUE",
        "HEARTBEAT-UUID-VALUE",
    ] {
        assert!(!debug.contains(secret), "Debug shows {secret}");
    }
    // The values are there for the code that sends them.
    assert_eq!(config.servers[2].api_key.expose(), "ENV-API-KEY-VALUE");
    assert_eq!(
        config.alerts.webhook[0].headers[0].1.expose(),
        "Bearer HEADER-TOKEN-VALUE"
    );
    assert!(
        config.alerts.webhook[1]
            .url
            .expose()
            .as_str()
            .contains("TELEGRAM-TOKEN-VALUE")
    );
    assert_eq!(
        config.alerts.webhook[1].chat_id.as_deref(),
        Some("-1001234567890")
    );
}

#[cfg(unix)]
#[test]
fn load_warns_about_inline_secrets_in_a_readable_file() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    let text = BASE.replace("api_key_env = \"FRA1_API_KEY\"", "api_key = \"inline\"");
    std::fs::write(&path, &text).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let loaded = config::load(&path).expect("valid");
    assert!(
        loaded.warnings.iter().any(|w| w.contains("chmod 600")
            && w.contains("servers[0].api_key")
            && w.contains("0644")),
        "{:?}",
        loaded.warnings
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(config::load(&path).expect("valid").warnings.is_empty());
}

#[test]
fn load_of_a_missing_file_says_how_to_point_elsewhere() {
    let errors = config::load(Path::new("/nonexistent/keywarden/agent.toml")).expect_err("missing");
    let text = errors.to_string();
    assert!(text.contains("/nonexistent/keywarden/agent.toml"), "{text}");
    assert!(
        text.contains("-c/--config") && text.contains("KEYWARDEN_CONFIG"),
        "{text}"
    );
}

#[test]
fn reports_default_to_mondays_at_nine_with_no_sinks() {
    let reports = load(BASE).expect("valid").config.reports;
    assert_eq!(reports.schedule.expr, "0 0 9 * * Mon");
    assert_eq!(reports.period, config::ReportPeriodKind::LastWeek);
    assert!(reports.sinks.is_empty());
    assert_eq!(reports.top_keys, 10);
}

#[test]
fn reports_name_configured_sinks_only() {
    let text = format!(
        "{BASE}\n[[alerts.webhook]]\nname = \"tg\"\nurl = \"https://api.telegram.org/bot1:A/sendMessage\"\nformat = \"telegram\"\nchat_id = \"1\"\n\n[reports]\nsinks = [\"tg\", \"mail\"]\nperiod = \"last-month\"\ntop_keys = 5\n"
    );
    let problem = problem_at(&text, "reports.sinks[1]");
    assert!(
        problem.message.contains("unknown sink \"mail\"") && problem.message.contains("tg"),
        "{problem}"
    );
    let ok = text.replace(", \"mail\"", "");
    let reports = load(&ok).expect("valid").config.reports;
    assert_eq!(reports.sinks, vec!["tg".to_string()]);
    assert_eq!(reports.period, config::ReportPeriodKind::LastMonth);
    assert_eq!(reports.top_keys, 5);
    let bad = ok.replace("top_keys = 5", "top_keys = 0");
    problem_at(&bad, "reports.top_keys");
}

#[test]
fn a_slack_token_needs_a_channel_and_the_slack_format() {
    let hook = |format: &str, extra: &str| {
        format!(
            "{BASE}\n[[alerts.webhook]]\nname = \"s\"\nurl = \"https://hooks.slack.com/services/T/B/X\"\nformat = \"{format}\"\n{extra}\n"
        )
    };
    let problem = problem_at(
        &hook("slack", "slack_token_env = \"HOOK_SECRET\""),
        "alerts.webhook[0].slack_channel",
    );
    assert!(problem.message.contains("channel id"), "{problem}");
    let wrong = problems(&hook("json", "slack_channel = \"C1\""));
    assert!(
        wrong
            .iter()
            .any(|p| p.message.contains("format = \"slack\" only")),
        "{wrong:?}"
    );
    let loaded = load(&hook(
        "slack",
        "slack_token_env = \"HOOK_SECRET\"\nslack_channel = \"C1\"",
    ))
    .expect("valid");
    let upload = loaded.config.alerts.webhook[0]
        .slack_upload
        .clone()
        .expect("upload configured");
    assert_eq!(upload.channel, "C1");
    assert_eq!(upload.token.expose(), "hook-secret");
    assert!(!format!("{upload:?}").contains("hook-secret"));
}

#[test]
fn max_concurrent_runs_defaults_to_the_machine_and_is_bounded() {
    let default = load(BASE).expect("valid").config.agent.max_concurrent_runs;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(default, (4 * cores).clamp(16, 128));
    let text = format!("[agent]\nmax_concurrent_runs = 300\n{BASE}");
    assert_eq!(
        load(&text).expect("valid").config.agent.max_concurrent_runs,
        300
    );
    for bad in ["0", "5000", "-1"] {
        let text = format!("[agent]\nmax_concurrent_runs = {bad}\n{BASE}");
        let problem = problem_at(&text, "agent.max_concurrent_runs");
        assert_eq!(problem.line, Some(line_of(&text, "max_concurrent_runs", 0)));
        assert_hint(&problem, &["out of range", "1 to 4096"]);
    }
}

#[test]
fn retention_durations_have_defaults_floors_and_clear_errors() {
    let loaded = load(BASE).unwrap();
    let retention = &loaded.config.retention;
    assert_eq!(retention.audit, Duration::from_secs(400 * 86_400));
    assert_eq!(retention.job_runs, Duration::from_secs(30 * 86_400));
    assert_eq!(retention.findings, Duration::from_secs(90 * 86_400));
    assert_eq!(retention.quota_history, Duration::from_secs(800 * 86_400));
    assert_eq!(retention.schedule.expr, "0 17 4 * * *");

    let set = format!(
        "{BASE}\n[retention]\naudit = \"730d\"\njob_runs = \"7d\"\nschedule = \"0 0 3 * * Sun\"\n"
    );
    let retention = load(&set).unwrap().config.retention;
    assert_eq!(retention.audit, Duration::from_secs(730 * 86_400));
    assert_eq!(retention.job_runs, Duration::from_secs(7 * 86_400));
    assert_eq!(retention.schedule.expr, "0 0 3 * * Sun");

    let short = problem_at(
        &format!("{BASE}\n[retention]\naudit = \"7d\"\n"),
        "retention.audit",
    );
    assert!(short.message.contains("at least 30d"), "{short:?}");
    assert_eq!(short.line, Some(8));
    let bare = problem_at(
        &format!("{BASE}\n[retention]\nfindings = 90\n"),
        "retention.findings",
    );
    assert!(bare.message.contains("needs a unit"), "{bare:?}");
    let zero = problem_at(
        &format!("{BASE}\n[retention]\njob_runs = \"0s\"\n"),
        "retention.job_runs",
    );
    assert!(zero.message.contains("more than zero"), "{zero:?}");
    let cron = problem_at(
        &format!("{BASE}\n[retention]\nschedule = \"daily\"\n"),
        "retention.schedule",
    );
    assert!(!cron.message.is_empty());
    let unknown = problems(&format!("{BASE}\n[retention]\nforever = true\n"));
    assert!(
        unknown.iter().any(|p| p.path.contains("retention.forever")),
        "{unknown:?}"
    );
}
