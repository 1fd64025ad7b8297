//! The quota and Reality jobs against servers that lie or confuse: keys sharing an id
//! or a uuid, counters no link can produce, a grace too long to add, counters full of
//! history at first sight, and verify-reality answering 307 or 999. Real HTTP on
//! loopback (the simulator, or the hostile server where the simulator is too honest),
//! a real store, a manual clock.

mod support;

use std::sync::Arc;

use keywarden::clock::ManualClock;
use keywarden::config::{Config, JobKind};
use keywarden::finding::FindingKind;
use keywarden::jobs::quota::{self, CrashPoint};
use keywarden::jobs::{JobContext, JobResult, RunMode};
use keywarden::sim::{ApiGeneration, Fault, Route};
use keywarden::store::Store;
use support::hostile::{Hostile, Key};
use support::quota::{MIB, Rig, Setup, kinds, of_kind, utc};
use support::within;

/// The hostile server, a config pointing at it, a store, a clock.
struct Bench {
    server: Hostile,
    config: Arc<Config>,
    target: keywarden::jobs::runner::Target,
    store: Store,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn new(version: &str, keys: Vec<Key>, quotas: &str) -> Bench {
        keywarden::tls::install_crypto_provider();
        let server = Hostile::start(version, keys).await;
        let dir = tempfile::tempdir().unwrap();
        let body = format!(
            "allow_delete = true\n{}\n[quotas]\n{quotas}\n",
            support::agent::server_block("fra-1", &server.base_url(), "")
        );
        let config = support::agent::config(dir.path(), &body);
        let target = keywarden::app::targets(&config, None).unwrap().remove(0);
        let store = Store::open(&config.agent.state_dir).unwrap();
        Bench {
            server,
            config,
            target,
            store,
            clock: ManualClock::new(utc(11, 20, 12, 0)),
            _dir: dir,
        }
    }

    fn ctx(&self) -> JobContext<'_> {
        JobContext {
            config: &self.config,
            server: &self.config.servers[0],
            api: &self.target.api,
            store: &self.store,
            clock: &self.clock,
            dry_run: false,
            mode: RunMode::Daemon,
            prober: &self.target.prober,
        }
    }

    async fn run(&self) -> JobResult {
        self.clock.advance(chrono::Duration::minutes(10));
        within("quota run", quota::run(&self.ctx())).await
    }

    async fn run_crashing(&self, crash: CrashPoint) -> JobResult {
        self.clock.advance(chrono::Duration::minutes(10));
        within("quota run", quota::run_with(&self.ctx(), Some(crash))).await
    }

    fn set_counters(&self, bytes: u64) {
        self.server
            .set(|b| b.keys.iter_mut().for_each(|k| k.counter = bytes));
    }

    /// Requests whose path names `identity`, other than the key list.
    fn calls_by(&self, identity: &str) -> Vec<String> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.path.split('/').any(|segment| segment == identity))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

fn shared_identity_keys() -> Vec<Key> {
    vec![
        Key::new("7", "uuid-a", "anna", 0),
        Key::new("7", "uuid-b", "bob", 0),
        Key::new("c", "uuid-shared", "carl", 0),
        Key::new("d", "uuid-shared", "dora", 0),
        Key::new("e", "uuid-e", "eve", 0),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_sharing_an_id_or_uuid_are_left_alone_and_the_others_handled() {
    for version in ["1.0.0", "2.3.6"] {
        let quotas = "limit = \"100 MiB\"\non_exceed = \"delete\"\ngrace = \"0s\"\n";
        let bench = Bench::new(version, shared_identity_keys(), quotas).await;
        let first = bench.run().await;
        assert_eq!(
            kinds(&first),
            [FindingKind::KeyIdentityAmbiguous],
            "{version}: {first:#?}"
        );
        bench.set_counters(200 * MIB);
        let second = bench.run().await;
        let ambiguous = of_kind(&second, FindingKind::KeyIdentityAmbiguous);
        assert_eq!(ambiguous.len(), 1, "{version}: {second:#?}");
        let details = &ambiguous[0].details;
        for named in ["7", "uuid-shared"] {
            assert!(details.contains(named), "{version}: {details}");
        }
        assert!(
            ambiguous[0].summary.contains("4 keys"),
            "{}",
            ambiguous[0].summary
        );
        // The unique key went over its limit and was deleted; nothing else was touched.
        assert_eq!(
            of_kind(&second, FindingKind::KeyDeleted)[0].subject,
            "uuid-e",
            "{version}"
        );
        let actions: Vec<String> = bench
            .server
            .actions()
            .into_iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(actions, ["DELETE /api/keys/e"], "{version}");
        for identity in ["7", "c", "d", "uuid-a", "uuid-b", "uuid-shared"] {
            assert!(
                bench.calls_by(identity).is_empty(),
                "{version}: {identity} was addressed: {:?}",
                bench.calls_by(identity)
            );
        }
        let ledger = bench.store.quota_ledger("fra-1").unwrap();
        let uuids: Vec<&str> = ledger.iter().map(|e| e.uuid.as_str()).collect();
        assert_eq!(uuids, ["uuid-e"], "{version}: no rows for ambiguous keys");
        assert!(
            second.plan[0].contains("4 left alone (shared id or uuid)"),
            "{version}: {:?}",
            second.plan
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_intent_is_not_sent_once_its_key_shares_an_id() {
    let keys = vec![
        Key::new("1", "uuid-1", "one", 0),
        Key::new("2", "uuid-2", "two", 0),
    ];
    let quotas = "limit = \"100 MiB\"\non_exceed = \"reset\"\n";
    let bench = Bench::new("2.3.6", keys, quotas).await;
    bench.run().await;
    bench.set_counters(200 * MIB);
    // The reset of key 1 is decided and committed; the process "dies" before sending.
    bench.run_crashing(CrashPoint::AfterIntents).await;
    assert!(bench.server.actions().is_empty());
    // Meanwhile a second key with id 1 appears on the server.
    bench
        .server
        .set(|b| b.keys.push(Key::new("1", "uuid-9", "nine", 0)));
    let restarted = Bench {
        target: keywarden::app::targets(&bench.config, None)
            .unwrap()
            .remove(0),
        ..bench
    };
    let result = restarted.run().await;
    let resets: Vec<_> = restarted
        .server
        .actions()
        .into_iter()
        .filter(|r| r.path.contains("/keys/1/") || r.path.contains("uuid-1"))
        .collect();
    assert!(resets.is_empty(), "reset sent by a shared id: {resets:?}");
    assert!(
        !of_kind(&result, FindingKind::KeyIdentityAmbiguous).is_empty(),
        "{result:#?}"
    );
    let open = restarted.store.quota_open_intents("fra-1").unwrap();
    assert!(
        open.iter().any(|i| i.action.uuid == "uuid-1"),
        "the intent stays open: {open:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_implausible_counter_is_rejected_not_counted_and_acted_on() {
    for generation in [ApiGeneration::V1, ApiGeneration::V2] {
        let setup = Setup {
            quotas: "limit = \"100 MiB\"\non_exceed = \"delete\"\ngrace = \"0s\"\n".into(),
            agent: "allow_delete = true".into(),
            ..Setup::default()
        };
        let rig = Rig::new(generation, 3, &setup).await;
        for index in 0..3 {
            rig.set_counter(index, 10 * MIB);
        }
        rig.run().await;
        // 18 000 000 000 000 000 000 bytes, and a 10 TB jump within ten minutes.
        rig.set_counter(0, 18_000_000_000_000_000_000);
        rig.set_counter(1, 10 * MIB + 10_000_000_000_000);
        rig.set_counter(2, 20 * MIB);
        let result = rig.run().await;
        let rejected = of_kind(&result, FindingKind::TrafficReadingImplausible);
        assert_eq!(rejected.len(), 1, "{generation:?}: {result:#?}");
        for index in [0, 1] {
            let uuid = rig.key(index).uuid;
            assert!(
                rejected[0].details.contains(&uuid),
                "{}",
                rejected[0].details
            );
            let entry = rig.entry(index);
            assert_eq!(
                (entry.used, entry.period_total, entry.counter),
                (10 * MIB, 10 * MIB, Some(10 * MIB)),
                "{generation:?}: key {index} left as it was"
            );
        }
        assert_eq!(rig.entry(2).used, 20 * MIB, "the plausible key is counted");
        assert!(
            !kinds(&result).contains(&FindingKind::QuotaExceeded),
            "{result:#?}"
        );
        assert!(
            rig.handle()
                .requests()
                .iter()
                .all(|r| r.method != "DELETE" && !r.path.ends_with("/reset")),
            "{generation:?}: nothing acted on"
        );
        // Plausible again: the finding resolves (is not raised) and counting resumes.
        rig.set_counter(0, 11 * MIB);
        rig.set_counter(1, 11 * MIB);
        let calm = rig.run().await;
        assert!(
            of_kind(&calm, FindingKind::TrafficReadingImplausible).is_empty(),
            "{calm:#?}"
        );
        assert_eq!(rig.entry(0).used, 11 * MIB);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_of_a_century_never_deletes_and_the_store_reads_it_back() {
    let setup = Setup {
        quotas: "limit = \"100 MiB\"\non_exceed = \"delete\"\ngrace = \"36500d\"\n".into(),
        agent: "allow_delete = true".into(),
        ..Setup::default()
    };
    let rig = Rig::new(ApiGeneration::V2, 1, &setup).await;
    rig.set_counter(0, 10 * MIB);
    rig.run().await;
    rig.set_counter(0, 200 * MIB);
    let over = rig.run().await;
    assert!(kinds(&over).contains(&FindingKind::QuotaExceeded));
    for _ in 0..3 {
        let later = rig.run().await;
        assert!(later.transport_failure.is_none(), "{later:#?}");
    }
    let due = rig.entry(0).delete_due.expect("a due date");
    assert!(
        due > rig.clock_now() + chrono::Duration::days(36_000),
        "{due}"
    );
    assert!(
        rig.handle().requests().iter().all(|r| r.method != "DELETE"),
        "no delete"
    );
}

fn adoption(adopt: &str) -> Setup {
    Setup {
        quotas: format!("limit = \"100 MiB\"\non_exceed = \"reset\"\nadopt = \"{adopt}\"\n"),
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_install_resets_nothing_and_counts_from_the_first_reading() {
    let rig = Rig::new(ApiGeneration::V1, 8, &adoption("baseline")).await;
    // Months of history in the counters: five keys far over this month's limit.
    for index in 0..8 {
        let bytes = if index < 5 { 500 * MIB } else { 20 * MIB };
        rig.set_counter(index, bytes);
    }
    let first = rig.run().await;
    assert!(first.findings.is_empty(), "{first:#?}");
    assert_eq!(rig.reset_posts(), 0);
    for index in 0..8 {
        let entry = rig.entry(index);
        assert_eq!((entry.used, entry.adopted), (0, true), "key {index}");
    }
    rig.set_counter(0, 530 * MIB);
    let second = rig.run().await;
    assert!(second.findings.is_empty(), "{second:#?}");
    assert_eq!(rig.entry(0).used, 30 * MIB);
    assert_eq!(rig.reset_posts(), 0);
    let rows = keywarden::commands::usage::rows(
        &rig.config,
        rig.store().quota_usage(None).unwrap(),
        rig.clock_now(),
    );
    assert!(rows.iter().all(|r| r.adopted), "usage marks adopted keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_count_counts_history_but_resets_only_from_the_next_run() {
    let rig = Rig::new(ApiGeneration::V2, 8, &adoption("count")).await;
    for index in 0..8 {
        let bytes = if index < 5 { 500 * MIB } else { 20 * MIB };
        rig.set_counter(index, bytes);
    }
    let first = rig.run().await;
    assert_eq!(
        of_kind(&first, FindingKind::QuotaExceeded).len(),
        5,
        "{first:#?}"
    );
    assert_eq!(rig.reset_posts(), 0, "nothing in the adoption run");
    assert_eq!(rig.entry(0).used, 500 * MIB);
    let second = rig.run().await;
    assert!(second.findings.is_empty(), "{second:#?}");
    assert_eq!(rig.reset_posts(), 5, "the next run acts");
}

/// The Reality job once, against the simulator.
async fn reality_once(fault: Option<Fault>) -> JobResult {
    let rig = Rig::new(ApiGeneration::V1, 1, &Setup::default()).await;
    if let Some(fault) = fault {
        rig.handle().fail_next(Route::VerifyReality, 1, fault);
    }
    within(
        "reality run",
        keywarden::jobs::run_job(JobKind::Reality, &rig.ctx(false)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_answer_that_says_so_makes_reality_invalid() {
    for status in [307, 999, 503, 404] {
        let fault = Fault::Status {
            status,
            detail: "whatever".into(),
        };
        let result = reality_once(Some(fault)).await;
        assert!(
            !kinds(&result).contains(&FindingKind::RealityInvalid),
            "{status}: {result:#?}"
        );
        let error = result.transport_failure.expect("an error of the call");
        assert!(error.contains(&status.to_string()), "{status}: {error}");
    }
    let invalid = reality_once(Some(Fault::Status {
        status: 500,
        detail: "Failed to verify Reality settings: missing dest".into(),
    }))
    .await;
    assert_eq!(kinds(&invalid), [FindingKind::RealityInvalid]);
    assert!(invalid.findings[0].details.contains("missing dest"));
    assert!(reality_once(None).await.findings.is_empty());
}
