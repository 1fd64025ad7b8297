//! agent.toml.example is valid once its variables are exported, and `keywarden validate`
//! (the real binary) prints its summary without the secrets. Variables are set on the child
//! process only: tests run in parallel and share this process's environment.

use std::process::{Command, Output};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/agent.toml.example");

/// The variables the example names, with values that must never be printed.
const VARIABLES: &[(&str, &str)] = &[
    ("FRA1_API_KEY", "fra1-api-key-S3CRET-1"),
    ("AMS2_API_KEY", "ams2-api-key-S3CRET-2"),
    ("KEYWARDEN_SMTP_PASSWORD", "smtp-password-S3CRET-3"),
    ("KEYWARDEN_HOOK_SECRET", "hook-secret-S3CRET-4"),
];

fn validate(with_variables: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keywarden"));
    command.args(["validate", "-c", EXAMPLE]);
    command.env_remove("KEYWARDEN_CONFIG");
    for (name, value) in VARIABLES {
        if with_variables {
            command.env(name, value);
        } else {
            command.env_remove(name);
        }
    }
    command.output().expect("run keywarden validate")
}

#[test]
fn example_validates_and_the_summary_hides_secrets() {
    let output = validate(true);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for expected in [
        "fra-1",
        "ams-2",
        "env FRA1_API_KEY [redacted]",
        "env KEYWARDEN_SMTP_PASSWORD [redacted]",
        "https://api.telegram.org/[redacted]",
        "next runs",
    ] {
        assert!(
            stdout.contains(expected),
            "summary lacks {expected:?}:\n{stdout}"
        );
    }
    for (name, value) in VARIABLES {
        assert!(!stdout.contains(value), "stdout shows {name}");
        assert!(!stderr.contains(value), "stderr shows {name}");
    }
    assert!(
        !stdout.contains("<token>") && !stdout.contains("bot%3Ctoken"),
        "telegram path shown"
    );
    // Warnings, if any (e.g. the telegram token in a world-readable file), are prefixed.
    assert!(
        stderr.lines().all(|line| line.starts_with("warning: ")),
        "stderr:\n{stderr}"
    );
}

#[test]
fn example_without_variables_names_each_missing_one() {
    let output = validate(false);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(output.stdout.is_empty(), "no summary on failure");
    for (name, _) in VARIABLES {
        assert!(
            stderr.contains(&format!("environment variable {name} is not set")),
            "stderr lacks {name}:\n{stderr}"
        );
    }
    assert!(
        stderr.contains(&format!("4 problems in {EXAMPLE}")),
        "{stderr}"
    );
}

#[test]
fn missing_config_file_exits_2_and_says_how_to_point_elsewhere() {
    let output = Command::new(env!("CARGO_BIN_EXE_keywarden"))
        .args(["validate", "-c", "/nonexistent/keywarden/agent.toml"])
        .output()
        .expect("run keywarden validate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/keywarden/agent.toml"),
        "{stderr}"
    );
    assert!(
        stderr.contains("-c/--config") && stderr.contains("KEYWARDEN_CONFIG"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 problem in /nonexistent/keywarden/agent.toml"),
        "{stderr}"
    );
}
