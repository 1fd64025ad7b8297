//! The Debian package's inputs and the shell integration: the packaged units are the
//! hardened ones with the package's binary path, every asset source exists, the
//! completions and man pages come from the binary's CLI definition, and `keywarden
//! report` writes its files for an operator to look at.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_keywarden");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn packaged_units_are_the_hardened_units_with_usr_bin() {
    for unit in ["keywarden.service", "keywarden@.service"] {
        let source = read(&format!("deploy/{unit}"));
        let packaged = read(&format!("deploy/debian/{unit}"));
        assert_eq!(
            packaged,
            source.replace("/usr/local/bin/keywarden", "/usr/bin/keywarden"),
            "deploy/debian/{unit} drifted from deploy/{unit}"
        );
        assert!(packaged.contains("ExecStart=/usr/bin/keywarden run"));
    }
}

#[test]
fn every_static_asset_of_the_package_exists() {
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().unwrap();
    let mut targets = Vec::new();
    for asset in assets {
        let (source, target) = (asset[0].as_str().unwrap(), asset[1].as_str().unwrap());
        targets.push(target.to_string());
        if source.starts_with("target/") {
            continue; // built by deploy/debian/build-deb.sh
        }
        let pattern = source.trim_end_matches("*.md");
        assert!(
            Path::new(ROOT).join(pattern).exists(),
            "{source} is missing"
        );
    }
    for needed in [
        "usr/bin/",
        "usr/lib/sysusers.d/keywarden.conf",
        "usr/lib/tmpfiles.d/keywarden.conf",
        "etc/keywarden/agent.toml.example",
        "usr/share/man/man1/",
    ] {
        assert!(
            targets.iter().any(|t| t == needed),
            "no asset goes to {needed}"
        );
    }
    let scripts = deb["maintainer-scripts"].as_str().unwrap();
    let postinst = read(&format!("{scripts}postinst"));
    assert!(postinst.contains("systemd-sysusers keywarden.conf"));
    let acting: Vec<&str> = postinst
        .lines()
        // The printed instructions (`  sudo systemctl enable --now`) are text, not actions.
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim_start().starts_with("sudo "))
        .filter(|l| l.contains("systemctl"))
        .collect();
    assert!(
        acting
            .iter()
            .all(|l| l.contains("daemon-reload") || l.contains("try-restart")),
        "postinst must not start or enable an unconfigured service: {acting:?}"
    );
    assert!(
        read("deploy/debian/keywarden.tmpfiles")
            .contains("/var/lib/keywarden 0700 keywarden keywarden")
    );
}

fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .output()
        .expect("run keywarden");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn completions_cover_every_command() {
    let commands = [
        "validate",
        "probe",
        "run",
        "check",
        "status",
        "usage",
        "report",
        "completions",
        "man",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let (ok, script, err) = run(&["completions", shell]);
        assert!(ok, "{shell}: {err}");
        for command in commands {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
        assert!(
            script.contains("period"),
            "{shell}: report's options complete too"
        );
    }
    let (ok, _, err) = run(&["completions", "tcsh"]);
    assert!(!ok && err.contains("possible values"), "{err}");
}

#[test]
fn man_pages_come_from_the_cli_definition() {
    let (ok, page, _) = run(&["man"]);
    assert!(ok);
    assert!(
        page.starts_with(".ie") || page.contains(".TH keywarden 1"),
        "{page}"
    );
    assert!(page.contains("report") && page.contains("completions"));
    let dir = tempfile::tempdir().unwrap();
    let (ok, listed, err) = run(&["man", "--out", dir.path().to_str().unwrap()]);
    assert!(ok, "{err}");
    let report = std::fs::read_to_string(dir.path().join("keywarden-report.1")).unwrap();
    assert!(report.contains(".TH keywarden-report 1"), "{report}");
    assert!(report.contains("period") && report.contains("send"));
    assert!(listed.lines().count() >= 10, "{listed}");
}

#[test]
fn report_writes_its_files_to_look_at() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = {:?}\nlisten = \"\"\n[[servers]]\nname = \"fra-1\"\nurl = \"http://127.0.0.1:9/api\"\napi_key_env = \"KW_TEST_KEY\"\n",
            dir.path().join("state")
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = Command::new(BIN)
        .args([
            "report",
            "-c",
            config.to_str().unwrap(),
            "--period",
            "2026-11",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("KW_TEST_KEY", "secret-key")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("November 2026"), "{stdout}");
    for file in [
        "report.html",
        "report.txt",
        "report.json",
        "traffic.png",
        "availability.png",
    ] {
        assert!(out.join(file).exists(), "{file} not written: {stdout}");
    }
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(
        text.contains("fra-1") && text.contains("no traffic counted"),
        "{text}"
    );

    let bad = Command::new(BIN)
        .args([
            "report",
            "-c",
            config.to_str().unwrap(),
            "--period",
            "2026-13",
        ])
        .env("KW_TEST_KEY", "secret-key")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("YYYY-MM"));
    let send = Command::new(BIN)
        .args(["report", "-c", config.to_str().unwrap(), "--send"])
        .env("KW_TEST_KEY", "secret-key")
        .output()
        .unwrap();
    assert_eq!(send.status.code(), Some(2), "no sinks configured");
    assert!(String::from_utf8_lossy(&send.stderr).contains("[reports].sinks"));
}
