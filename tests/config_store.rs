//! `[agent] store` and `[store.postgres]` (issue 13): the choice, the URL as a secret
//! (exactly one of url_env and url_file; never printed, never in a problem), the schema
//! identifier, the pool bounds, TLS modes, and the summary `validate` prints.

use std::collections::HashMap;
use std::path::Path;

use keywarden::config::{self, ConfigErrors, ConfigProblem, Loaded, StoreChoice};

const ORIGIN: &str = "/etc/keywarden/agent.toml";
const PASSWORD: &str = "pg-pass-3c9e1f7a";

const BASE: &str = r#"
[[servers]]
name = "fra-1"
url = "https://fra-1.example.net/api"
api_key_env = "FRA1_API_KEY"
"#;

fn load_with(text: &str, url: &str) -> Result<Loaded, ConfigErrors> {
    let env: HashMap<String, String> = [
        ("FRA1_API_KEY", "fra1-key"),
        ("KEYWARDEN_DATABASE_URL", url),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    config::from_str_with_env(text, Path::new(ORIGIN), &move |name: &str| {
        env.get(name).cloned()
    })
}

fn good_url() -> String {
    format!("postgres://kw:{PASSWORD}@db.example.net:5432/keywarden")
}

fn problems(text: &str, url: &str) -> Vec<ConfigProblem> {
    match load_with(text, url) {
        Ok(loaded) => panic!("expected problems, got {:?}", loaded.config.store),
        Err(errors) => errors.problems,
    }
}

fn postgres(text: &str) -> String {
    format!("{BASE}\n[agent]\nstore = \"postgres\"\n{text}")
}

#[test]
fn sqlite_is_the_default() {
    let loaded = load_with(BASE, "").expect("valid");
    assert_eq!(loaded.config.store, StoreChoice::Sqlite);
}

#[test]
fn postgres_with_every_default() {
    let text = postgres("[store.postgres]\nurl_env = \"KEYWARDEN_DATABASE_URL\"\n");
    let loaded = load_with(&text, &good_url()).expect("valid");
    let pg = loaded.config.store.postgres().expect("postgres");
    assert_eq!(pg.schema, "keywarden");
    assert_eq!(pg.pool_size, 8);
    assert!(pg.tls, "TLS unless the URL disables it");
    assert_eq!(pg.ca_file, None);
    assert_eq!(pg.agent_name, config::default_agent_name());
    assert!(!format!("{pg:?}").contains(PASSWORD));
    // The summary says where the URL comes from, never what it is.
    let summary = config::summary::render(&loaded.config, Path::new(ORIGIN), chrono::Utc::now());
    assert!(
        summary.contains("env KEYWARDEN_DATABASE_URL [redacted]"),
        "{summary}"
    );
    assert!(summary.contains("verify-full"), "{summary}");
    assert!(
        !summary.contains(PASSWORD) && !summary.contains("db.example.net"),
        "{summary}"
    );
}

#[test]
fn a_url_file_and_sslmode_disable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db-url");
    std::fs::write(&file, format!("{}?sslmode=disable\n", good_url())).unwrap();
    let text = postgres(&format!(
        "[store.postgres]\nurl_file = \"{}\"\nschema = \"kw_prod\"\npool_size = 16\nagent_name = \"kw-a\"\n",
        file.display()
    ));
    let loaded = load_with(&text, "").expect("valid");
    let pg = loaded.config.store.postgres().expect("postgres");
    assert!(!pg.tls);
    assert_eq!(
        (pg.schema.as_str(), pg.pool_size, pg.agent_name.as_str()),
        ("kw_prod", 16, "kw-a")
    );
    assert!(!pg.driver_url().expose().contains("sslmode"));
}

#[test]
fn postgres_without_its_section() {
    let all = problems(&postgres(""), &good_url());
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].path, "agent.store");
    assert!(all[0].message.contains("[store.postgres]"), "{}", all[0]);
    assert_eq!(all[0].line, Some(8), "the line of `store = \"postgres\"`");
}

#[test]
fn exactly_one_of_url_env_and_url_file() {
    let neither = problems(
        &postgres("[store.postgres]\nschema = \"kw\"\n"),
        &good_url(),
    );
    assert_eq!(neither.len(), 1, "{neither:?}");
    assert_eq!(neither[0].path, "store.postgres");
    assert!(
        neither[0].message.contains("url_env or url_file"),
        "{}",
        neither[0]
    );
    let both = problems(
        &postgres("[store.postgres]\nurl_env = \"KEYWARDEN_DATABASE_URL\"\nurl_file = \"/x\"\n"),
        &good_url(),
    );
    assert_eq!(both.len(), 1, "{both:?}");
    assert_eq!(both[0].path, "store.postgres.url_file");
    assert!(
        both[0].message.contains("conflicts with url_env"),
        "{}",
        both[0]
    );
    // An inline URL is no key at all.
    let inline = problems(
        &postgres("[store.postgres]\nurl = \"postgres://x\"\n"),
        &good_url(),
    );
    assert!(
        inline.iter().any(|p| p.path == "store.postgres.url"),
        "{inline:?}"
    );
}

#[test]
fn bad_values_are_reported_together_without_the_password() {
    let text = postgres(
        "[store.postgres]\nurl_env = \"KEYWARDEN_DATABASE_URL\"\nschema = \"Bad-Name\"\npool_size = 0\nagent_name = \"has space\"\nca_file = \"/nonexistent/ca.pem\"\n",
    );
    let url = format!("{}?sslmode=prefer", good_url());
    let all = problems(&text, &url);
    let paths: Vec<&str> = all.iter().map(|p| p.path.as_str()).collect();
    for path in [
        "store.postgres.url_env",
        "store.postgres.schema",
        "store.postgres.pool_size",
        "store.postgres.agent_name",
        "store.postgres.ca_file",
    ] {
        assert!(paths.contains(&path), "{path} missing in {all:?}");
    }
    let url_problem = all
        .iter()
        .find(|p| p.path == "store.postgres.url_env")
        .unwrap();
    assert!(
        url_problem.message.contains("sslmode=prefer"),
        "{url_problem}"
    );
    for problem in &all {
        assert!(!problem.to_string().contains(PASSWORD), "{problem}");
    }
    // A URL the driver refuses: its message is shown, the password is not.
    let bad = format!("postgres://kw:{PASSWORD}@db:5432/kw?no_such_option=1");
    let all = problems(
        &postgres("[store.postgres]\nurl_env = \"KEYWARDEN_DATABASE_URL\"\n"),
        &bad,
    );
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        all[0].message.contains("not a valid PostgreSQL URL"),
        "{}",
        all[0]
    );
    assert!(!all[0].to_string().contains(PASSWORD), "{}", all[0]);
    // A variable that is not set.
    let all = problems(
        &postgres("[store.postgres]\nurl_env = \"UNSET_DB_URL\"\n"),
        "",
    );
    assert!(
        all[0].message.contains("UNSET_DB_URL is not set"),
        "{}",
        all[0]
    );
}

#[test]
fn a_postgres_section_beside_sqlite_is_a_warning() {
    let text = format!("{BASE}\n[store.postgres]\nurl_env = \"KEYWARDEN_DATABASE_URL\"\n");
    let loaded = load_with(&text, &good_url()).expect("valid");
    assert_eq!(loaded.config.store, StoreChoice::Sqlite);
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("store.postgres") && w.contains("ignored")),
        "{:?}",
        loaded.warnings
    );
}
