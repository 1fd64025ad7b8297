//! How long `validate` takes to report a file full of problems, by kind and count. The
//! time must grow linearly (2k/4k/8k/16k problems once took 0.35/1.2/4.9/15.5 s: each
//! problem's line was found by scanning the file from the top). Prints a table; run
//! with `cargo bench --bench config_errors`; not part of `cargo test`.

use std::path::Path;
use std::time::{Duration, Instant};

const COUNTS: [usize; 4] = [2_000, 4_000, 8_000, 16_000];

/// A file with `n` problems of one kind (after one valid server).
fn file(kind: &str, n: usize) -> String {
    let mut text = String::from(
        "[[servers]]\nname = \"s0\"\nurl = \"http://127.0.0.1:9/api\"\napi_key = \"key-0000\"\n",
    );
    for i in 0..n {
        let entry = match kind {
            "unknown key" => format!("[[quotas.rules]]\nmatch_name = \"k{i}\"\nlimt = 1\n"),
            "wrong type" => format!("[[quotas.rules]]\nmatch_name = \"k{i}\"\nperiod_day = \"x\"\n"),
            "bad duration" => format!("[[quotas.rules]]\nmatch_name = \"k{i}\"\ngrace = \"soon\"\n"),
            "duplicate name" => "[[servers]]\nname = \"s0\"\nurl = \"http://127.0.0.1:9/api\"\napi_key = \"key-0000\"\n".to_string(),
            "syntax" => format!("k{i} = \n"),
            _ => unreachable!(),
        };
        text.push_str(&entry);
    }
    text
}

fn time(text: &str) -> (Duration, usize) {
    let started = Instant::now();
    let problems =
        match keywarden::config::from_str_with_env(text, Path::new("/bench.toml"), &|_| None) {
            Ok(_) => 0,
            Err(errors) => errors.problems.len(),
        };
    (started.elapsed(), problems)
}

fn main() {
    println!(
        "{:<16} {:>8} {:>10} {:>12} {:>10}",
        "kind", "problems", "file KiB", "time", "us/problem"
    );
    for kind in [
        "unknown key",
        "wrong type",
        "bad duration",
        "duplicate name",
        "syntax",
    ] {
        for n in COUNTS {
            let text = file(kind, n);
            let (elapsed, problems) = time(&text);
            println!(
                "{kind:<16} {problems:>8} {:>10} {:>12.3?} {:>10.1}",
                text.len() / 1024,
                elapsed,
                elapsed.as_secs_f64() * 1e6 / problems.max(1) as f64
            );
        }
    }
}
