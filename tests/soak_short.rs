//! The fault soak's short run (examples/soak, 60 s, a few servers): every fault the
//! simulator has, sinks going down and up, and the same checks as the long run.

#[path = "support/smtp.rs"]
#[allow(dead_code)]
mod smtp;

#[path = "../examples/soak/run.rs"]
mod run;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_of_faults_loses_nothing_and_counts_every_byte() {
    let mut options = run::Options::new(6, Duration::from_secs(60));
    options.fault_every = Duration::from_millis(700);
    let summary = run::soak(options).await.expect("the soak starts");
    let report: Vec<String> = summary
        .checks
        .iter()
        .map(|c| {
            format!(
                "{} {}: {}",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            )
        })
        .collect();
    println!("{}", report.join("\n"));
    assert!(summary.passed(), "{}", report.join("\n"));
    assert!(
        summary.faults.len() >= 10,
        "most faults were injected: {:?}",
        summary.faults
    );
}
