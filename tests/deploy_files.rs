//! The deployment files in `deploy/`: the systemd units (hardening directives, and the
//! exposure rating of `systemd-analyze security` when that tool is installed), the
//! Dockerfile and its context filter, and the sysusers entry. Only std: the files are
//! read as text and the rating comes from running `systemd-analyze`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The highest overall exposure `systemd-analyze security` may give a unit ("OK").
const MAX_EXPOSURE: f64 = 2.0;

fn deploy_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name)
}

fn read_deploy(name: &str) -> String {
    let path = deploy_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

// ---- systemd units ---------------------------------------------------------------------

/// A unit file as (section, key, value) triples, in order; comments and blank lines
/// dropped, backslash continuations joined.
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut entries = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        if full.starts_with('[') && full.ends_with(']') {
            section = full[1..full.len() - 1].to_string();
        } else if let Some((key, value)) = full.split_once('=') {
            entries.push((
                section.clone(),
                key.trim().to_string(),
                value.trim().to_string(),
            ));
        } else {
            panic!("not a unit file line: {full:?}");
        }
    }
    entries
}

struct Unit {
    name: &'static str,
    entries: Vec<(String, String, String)>,
}

impl Unit {
    fn load(name: &'static str) -> Unit {
        Unit {
            name,
            entries: parse_unit(&read_deploy(name)),
        }
    }

    /// Every value of `key` in `[section]`, in order.
    fn values(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The effective value of a single-valued `[Service]` key (the last assignment).
    fn service(&self, key: &str) -> Option<&str> {
        self.values("Service", key).last().copied()
    }

    fn expect(&self, key: &str, wanted: &str) {
        assert_eq!(
            self.service(key),
            Some(wanted),
            "{}: expected {key}={wanted}",
            self.name
        );
    }

    fn expect_yes(&self, key: &str) {
        let value = self.service(key);
        assert!(
            matches!(value, Some("yes" | "true" | "1" | "on")),
            "{}: expected {key}=yes, found {value:?}",
            self.name
        );
    }
}

/// What both units must say, textually (the contract of the deployment issue).
fn check_hardening(unit: &Unit) {
    let name = unit.name;

    let unit_type = unit.service("Type");
    assert!(
        matches!(unit_type, Some("exec" | "simple")),
        "{name}: Type=exec or simple, found {unit_type:?}"
    );
    unit.expect("ExecReload", "/bin/kill -HUP $MAINPID");
    unit.expect("Restart", "on-failure");
    unit.expect("TimeoutStopSec", "45");
    // Room for descriptors beyond the usual 1024 (the /metrics endpoint caps its own).
    unit.expect("LimitNOFILE", "65536");

    // A non-root identity: a dedicated user or a dynamic one.
    let dynamic = matches!(unit.service("DynamicUser"), Some("yes" | "true"));
    let user = unit.service("User");
    assert!(
        dynamic || matches!(user, Some(u) if !u.is_empty() && u != "root" && u != "0"),
        "{name}: needs User=<non-root> or DynamicUser=yes, found User={user:?}"
    );
    assert!(
        unit.service("StateDirectory")
            .is_some_and(|dir| dir == "keywarden" || dir.starts_with("keywarden/")),
        "{name}: StateDirectory=keywarden[/...]"
    );
    assert!(
        unit.service("ConfigurationDirectory")
            .is_some_and(|dir| dir == "keywarden" || dir.starts_with("keywarden/")),
        "{name}: ConfigurationDirectory=keywarden[/...]"
    );
    unit.expect("UMask", "0077");

    unit.expect("ProtectSystem", "strict");
    assert!(
        matches!(
            unit.service("ProtectHome"),
            Some("yes" | "true" | "read-only" | "tmpfs")
        ),
        "{name}: ProtectHome"
    );
    for key in [
        "PrivateTmp",
        "PrivateDevices",
        "NoNewPrivileges",
        "MemoryDenyWriteExecute",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "LockPersonality",
        "RemoveIPC",
    ] {
        unit.expect_yes(key);
    }
    unit.expect("ProtectProc", "invisible");
    unit.expect("ProcSubset", "pid");
    unit.expect("DevicePolicy", "closed");
    unit.expect("KeyringMode", "private");
    unit.expect("SystemCallArchitectures", "native");

    // An empty bounding set: no capabilities at all.
    assert_eq!(
        unit.values("Service", "CapabilityBoundingSet"),
        vec![""],
        "{name}: CapabilityBoundingSet= (empty)"
    );
    assert!(
        unit.values("Service", "SystemCallFilter")
            .first()
            .is_some_and(|first| first.split_whitespace().any(|set| set == "@system-service")),
        "{name}: the first SystemCallFilter= must allow @system-service"
    );

    // Exactly the families the agent uses.
    let families = unit.values("Service", "RestrictAddressFamilies");
    assert_eq!(
        families.len(),
        1,
        "{name}: one RestrictAddressFamilies= line"
    );
    let mut families: Vec<&str> = families[0].split_whitespace().collect();
    families.sort_unstable();
    assert_eq!(
        families,
        ["AF_INET", "AF_INET6", "AF_UNIX"],
        "{name}: RestrictAddressFamilies"
    );

    // It must reach arbitrary VPN servers, SMTP relays and webhooks.
    for key in ["IPAddressDeny", "IPAddressAllow"] {
        assert!(
            unit.values("Service", key).is_empty(),
            "{name}: {key}= would cut the agent off from arbitrary VPN servers"
        );
    }
    assert!(
        !matches!(unit.service("PrivateNetwork"), Some("yes" | "true")),
        "{name}: PrivateNetwork=yes would cut the agent off from the network"
    );

    assert_eq!(
        unit.values("Install", "WantedBy"),
        vec!["multi-user.target"],
        "{name}: WantedBy=multi-user.target"
    );
}

#[test]
fn keywarden_service_is_hardened() {
    let unit = Unit::load("keywarden.service");
    check_hardening(&unit);
    unit.expect(
        "ExecStart",
        "/usr/local/bin/keywarden run -c /etc/keywarden/agent.toml",
    );
    unit.expect("EnvironmentFile", "-/etc/keywarden/keywarden.env");
    unit.expect("StateDirectory", "keywarden");
    unit.expect("ConfigurationDirectory", "keywarden");
}

#[test]
fn templated_service_separates_instances() {
    let unit = Unit::load("keywarden@.service");
    check_hardening(&unit);
    unit.expect(
        "ExecStart",
        "/usr/local/bin/keywarden run -c /etc/keywarden/%i.toml",
    );
    unit.expect("EnvironmentFile", "-/etc/keywarden/%i.env");
    // One state store per instance, the only writable path of each.
    unit.expect("StateDirectory", "keywarden/%i");
}

#[test]
fn sysusers_entry_creates_the_unit_user() {
    let text = read_deploy("keywarden.sysusers");
    let entry = text
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("u "))
        .expect("a `u` line in keywarden.sysusers");
    let user = entry.split_whitespace().nth(1).unwrap();
    for name in ["keywarden.service", "keywarden@.service"] {
        let unit = Unit::load(name);
        if unit.service("DynamicUser") != Some("yes") {
            assert_eq!(
                unit.service("User"),
                Some(user),
                "{name}: User= vs sysusers"
            );
        }
    }
}

/// The overall exposure of `unit` per `systemd-analyze security --offline=true`, or
/// `None` (with a note on stderr) when the tool is missing or too old for `--offline`.
fn exposure(unit: &str) -> Option<f64> {
    let path = deploy_path(unit);
    let output = match Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .env("SYSTEMD_COLORS", "0")
        .output()
    {
        Ok(output) => output,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            eprintln!("skipped: systemd-analyze is not installed; checked {unit} textually only");
            return None;
        }
        Err(err) => panic!("running systemd-analyze: {err}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("unrecognized option") {
        eprintln!("skipped: this systemd-analyze has no --offline (systemd < 250): {stderr}");
        return None;
    }
    // "→ Overall exposure level for keywarden.service: 1.1 OK 🙂"
    let line = stdout
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!("no \"Overall exposure level\" line for {unit}:\n{stdout}\n{stderr}")
        });
    let after = line
        .rsplit_once(": ")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("unexpected line: {line:?}"));
    let figure = after.split_whitespace().next().unwrap_or("");
    let value: f64 = figure
        .parse()
        .unwrap_or_else(|_| panic!("no exposure figure in {line:?}"));
    eprintln!(
        "{unit}: {}",
        line.trim_start_matches(|c: char| !c.is_ascii_alphabetic())
    );
    Some(value)
}

#[test]
fn units_rate_ok_in_systemd_analyze_security() {
    for unit in ["keywarden.service", "keywarden@.service"] {
        if let Some(value) = exposure(unit) {
            assert!(
                value <= MAX_EXPOSURE,
                "{unit}: overall exposure {value} > {MAX_EXPOSURE}"
            );
        }
    }
}

#[test]
fn unit_parser_reads_sections_continuations_and_empty_values() {
    let entries = parse_unit(
        "# comment\n[Service]\nCapabilityBoundingSet=\nExecStart=/bin/a \\\n  -b\n\n[Install]\nWantedBy=x\n",
    );
    let triple = |s: &str, k: &str, v: &str| (s.to_string(), k.to_string(), v.to_string());
    assert_eq!(
        entries,
        vec![
            triple("Service", "CapabilityBoundingSet", ""),
            triple("Service", "ExecStart", "/bin/a  -b"),
            triple("Install", "WantedBy", "x"),
        ]
    );
}

// ---- Dockerfile ------------------------------------------------------------------------

/// Dockerfile instructions as (INSTRUCTION, arguments), continuations joined.
fn parse_dockerfile(text: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with('#') || (pending.is_empty() && line.is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let (word, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        instructions.push((word.to_ascii_uppercase(), args.trim().to_string()));
    }
    instructions
}

#[test]
fn dockerfile_builds_in_stages_and_runs_unprivileged() {
    let instructions = parse_dockerfile(&read_deploy("Dockerfile"));
    let all = |word: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(w, _)| w == word)
            .map(|(_, a)| a.as_str())
            .collect()
    };

    // Multi-stage: a Rust builder on bookworm, a bookworm-slim runtime.
    let froms = all("FROM");
    assert!(
        froms.len() >= 2,
        "multi-stage build expected, FROM lines: {froms:?}"
    );
    let builder = froms[0].to_ascii_lowercase();
    assert!(
        builder.contains("rust:") && builder.contains("slim-bookworm") && builder.contains(" as "),
        "builder stage: {builder}"
    );
    let stage_name = builder.rsplit(' ').next().unwrap().to_string();
    let runtime = froms.last().unwrap();
    assert!(
        runtime.contains("debian:bookworm-slim"),
        "runtime stage: {runtime}"
    );

    // Everything after the last FROM is the runtime stage.
    let last_from = instructions.iter().rposition(|(w, _)| w == "FROM").unwrap();
    let builder_stage = &instructions[..last_from];
    let runtime_stage = &instructions[last_from..];
    assert!(
        builder_stage
            .iter()
            .any(|(w, a)| w == "RUN" && a.contains("cargo build --release --locked")),
        "the builder runs `cargo build --release --locked`"
    );
    assert!(
        runtime_stage.iter().any(|(w, a)| w == "COPY"
            && a.to_ascii_lowercase()
                .contains(&format!("--from={stage_name}"))
            && a.ends_with("/usr/local/bin/keywarden")),
        "the runtime copies the binary from the builder to /usr/local/bin/keywarden"
    );
    let runtime_runs: Vec<&str> = runtime_stage
        .iter()
        .filter(|(w, _)| w == "RUN")
        .map(|(_, a)| a.as_str())
        .collect();
    assert!(
        runtime_runs
            .iter()
            .any(|run| run.contains("ca-certificates")),
        "the runtime installs ca-certificates"
    );
    assert!(
        !runtime_runs.iter().any(|run| run.contains("cargo")),
        "no Rust toolchain in the runtime stage"
    );

    // The last USER is not root.
    let user = runtime_stage
        .iter()
        .rev()
        .find(|(w, _)| w == "USER")
        .map(|(_, a)| a.as_str())
        .expect("a USER in the runtime stage");
    let uid = user.split(':').next().unwrap();
    assert!(
        !uid.is_empty() && uid != "root" && uid != "0",
        "USER {user} is root"
    );

    let volumes = all("VOLUME").join(" ");
    assert!(
        volumes.contains("/var/lib/keywarden"),
        "VOLUME /var/lib/keywarden: {volumes}"
    );
    assert!(
        all("EXPOSE")
            .iter()
            .any(|a| a.split_whitespace().any(|p| p == "9477" || p == "9477/tcp")),
        "EXPOSE 9477"
    );

    let healthchecks = all("HEALTHCHECK");
    assert_eq!(healthchecks.len(), 1, "one HEALTHCHECK");
    let health = healthchecks[0];
    assert!(
        health.contains("CMD") && health.contains("127.0.0.1:9477/healthz"),
        "HEALTHCHECK GETs /healthz on the agent's port: {health}"
    );
    // Its client must be in the image: the runtime stage installs it.
    let client = ["busybox", "curl", "wget"]
        .into_iter()
        .find(|tool| health.contains(tool))
        .expect("HEALTHCHECK uses busybox, curl or wget");
    assert!(
        runtime_runs
            .iter()
            .any(|run| run.contains(&format!(" {client}"))),
        "HEALTHCHECK needs {client}, which the runtime stage must install"
    );

    let entrypoint = all("ENTRYPOINT").join(" ");
    let cmd = all("CMD").join(" ");
    assert!(
        entrypoint.contains("/usr/local/bin/keywarden") && cmd.contains("\"run\""),
        "ENTRYPOINT keywarden, CMD run: {entrypoint} / {cmd}"
    );
}

/// Whether a path passes a `*` + `!allowed` style ignore file (the only style used).
fn passes_ignore(ignore: &[&str], path: &str) -> bool {
    let mut included = true;
    for pattern in ignore {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, *pattern),
        };
        let pattern = pattern.trim_end_matches('/');
        let matches = pattern == "*" || path == pattern || path.starts_with(&format!("{pattern}/"));
        if matches {
            included = negated;
        }
    }
    included
}

#[test]
fn docker_context_keeps_what_the_build_copies_and_drops_target() {
    let ignore_text = read_deploy("Dockerfile.dockerignore");
    let ignore: Vec<&str> = ignore_text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    assert!(
        !passes_ignore(&ignore, "target"),
        "target/ must stay out of the context"
    );
    assert!(
        !passes_ignore(&ignore, ".git"),
        ".git must stay out of the context"
    );

    let instructions = parse_dockerfile(&read_deploy("Dockerfile"));
    let mut sources = 0;
    for (word, args) in &instructions {
        if (word != "COPY" && word != "ADD") || args.contains("--from=") {
            continue;
        }
        let parts: Vec<&str> = args
            .split_whitespace()
            .filter(|p| !p.starts_with("--"))
            .collect();
        for source in &parts[..parts.len() - 1] {
            sources += 1;
            let source = source.trim_start_matches("./").trim_end_matches('/');
            assert!(
                passes_ignore(&ignore, source),
                "{word} {source}: excluded by Dockerfile.dockerignore"
            );
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(source).exists(),
                "{word} {source}: no such file in the repository"
            );
        }
    }
    assert!(
        sources >= 3,
        "expected COPY of Cargo.toml, Cargo.lock and src"
    );
}
