//! The PostgreSQL store's schema on a real server (tests/support/pg.rs): migrations under
//! their lock (two agents starting together: one applies, the other waits and finds
//! nothing to do), the same tables and columns as SQLite's, the append-only audit log,
//! and connection errors that never show the URL's password.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keywarden::store::postgres::{self, PgConnector};
use support::pg::{PG_PASSWORD, skip_without_pg};

/// Every await here has a deadline saying what hung.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_migrating_at_once_apply_each_step_once() {
    let Some(pg) = skip_without_pg("two_agents_migrating_at_once_apply_each_step_once") else {
        return;
    };
    let database = within("create database", pg.database()).await;
    let first = PgConnector::from_config(&pg.config(&database, "agent-a")).unwrap();
    let second = PgConnector::from_config(&pg.config(&database, "agent-b")).unwrap();
    let (a, b) = within("both migrations", async {
        tokio::join!(postgres::migrate(&first), postgres::migrate(&second))
    })
    .await;
    let (a, b) = (a.expect("agent a migrates"), b.expect("agent b migrates"));
    let latest = postgres::current_version();
    assert_eq!(latest, keywarden::store::latest_schema_version());
    assert_eq!((a.to, b.to), (latest, latest));
    // Exactly one of them applied the steps; the other waited for the lock and found
    // the schema done (without the lock both would have applied, or one failed).
    let mut applied = [a.applied, b.applied];
    applied.sort();
    assert_eq!(applied, [0, latest as usize], "{a:?} {b:?}");
    let from_zero = [a, b].iter().filter(|m| m.from == 0).count();
    assert_eq!(from_zero, 1, "the waiting agent saw the finished version");

    let admin = within("admin", pg.admin(&database)).await;
    let versions: Vec<i64> = admin
        .query(
            "SELECT version FROM keywarden.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, (1..=latest).collect::<Vec<_>>());

    // Again: nothing to do.
    let again = within("third migration", postgres::migrate(&first))
        .await
        .unwrap();
    assert_eq!((again.from, again.to, again.applied), (latest, latest, 0));
}

#[tokio::test]
async fn the_schema_has_sqlites_tables_and_columns_plus_agents() {
    let Some(pg) = skip_without_pg("the_schema_has_sqlites_tables_and_columns_plus_agents") else {
        return;
    };
    let database = within("create database", pg.database()).await;
    let connector = PgConnector::from_config(&pg.config(&database, "agent-a")).unwrap();
    within("migrate", postgres::migrate(&connector))
        .await
        .unwrap();
    let admin = within("admin", pg.admin(&database)).await;
    let mut in_pg: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in admin
        .query(
            "SELECT table_name::TEXT, column_name::TEXT FROM information_schema.columns WHERE table_schema = 'keywarden'",
            &[],
        )
        .await
        .unwrap()
    {
        in_pg.entry(row.get(0)).or_default().insert(row.get(1));
    }

    let dir = tempfile::tempdir().unwrap();
    keywarden::store::Store::open(dir.path()).unwrap();
    let sqlite = rusqlite::Connection::open(dir.path().join(keywarden::store::DB_FILE)).unwrap();
    let tables: Vec<String> = sqlite
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut in_sqlite: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for table in tables {
        let columns: BTreeSet<String> = sqlite
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        in_sqlite.insert(table, columns);
    }
    let agents = in_pg.remove("agents").expect("the agents table");
    assert_eq!(
        agents,
        ["agent_name", "host", "pid", "started_at", "renewed_at"]
            .into_iter()
            .map(str::to_owned)
            .collect::<BTreeSet<_>>()
    );
    assert!(in_pg.remove("schema_migrations").is_some());
    assert_eq!(
        in_pg, in_sqlite,
        "PostgreSQL's tables and columns vs SQLite's"
    );
}

#[tokio::test]
async fn the_audit_log_is_append_only() {
    let Some(pg) = skip_without_pg("the_audit_log_is_append_only") else {
        return;
    };
    let database = within("create database", pg.database()).await;
    let connector = PgConnector::from_config(&pg.config(&database, "agent-a")).unwrap();
    within("migrate", postgres::migrate(&connector))
        .await
        .unwrap();
    let client = within("pooled", connector.pooled()).await.unwrap();
    client
        .execute(
            "INSERT INTO audit_log (at, server, action, target, result) VALUES ('2026-11-28T10:00:00.000Z', 's', 'sync', 'config.json', 'ok')",
            &[],
        )
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_log SET result = 'failed'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let error = client.execute(sql, &[]).await.expect_err(sql);
        let text = keywarden::store::postgres::error_text(&error);
        assert!(text.contains("audit_log is append-only"), "{sql}: {text}");
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM audit_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn connection_errors_never_show_the_password() {
    let Some(pg) = skip_without_pg("connection_errors_never_show_the_password") else {
        return;
    };
    let database = within("create database", pg.database()).await;
    // A wrong password: the server refuses.
    let mut config = pg.config(&database, "agent-a");
    let wrong = "wrong-pass-e5d1c0ffee";
    config.url = keywarden::secret::Secret::new(config.url.expose().replace(PG_PASSWORD, wrong));
    let connector = PgConnector::from_config(&config).unwrap();
    let error = within("wrong password", postgres::migrate(&connector))
        .await
        .expect_err("a wrong password is refused");
    let text = error.to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(!text.contains(wrong), "{text}");
    assert!(!text.contains("postgres://"), "{text}");
    // Nobody listening.
    let mut config = pg.config(&database, "agent-a");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    config.url = keywarden::secret::Secret::new(
        config
            .url
            .expose()
            .replace(&format!(":{}/", pg.port), &format!(":{closed}/")),
    );
    let connector = PgConnector::from_config(&config).unwrap();
    let error = within("unreachable", connector.dedicated())
        .await
        .expect_err("nobody listens there");
    let text = error.to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains(PG_PASSWORD), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{closed}/{database}")),
        "{text}"
    );
}

#[tokio::test]
async fn a_dedicated_connection_carries_the_agent_name_and_ends_when_cut() {
    let Some(pg) =
        skip_without_pg("a_dedicated_connection_carries_the_agent_name_and_ends_when_cut")
    else {
        return;
    };
    let database = within("create database", pg.database()).await;
    let connector = PgConnector::from_config(&pg.config(&database, "agent-dedicated")).unwrap();
    within("migrate", postgres::migrate(&connector))
        .await
        .unwrap();
    let (client, task) = within("dedicated", connector.dedicated()).await.unwrap();
    let name: String = client
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "agent-dedicated");
    // search_path is the schema: tables resolve without it.
    client
        .query_one("SELECT count(*) FROM agents", &[])
        .await
        .unwrap();
    let cut = within(
        "terminate",
        pg.terminate_backends(&database, Some("agent-dedicated")),
    )
    .await;
    assert_eq!(cut, 1);
    within("the connection task ends", task).await.unwrap();
    assert!(client.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_against_the_ca_file_and_the_host_name() {
    let ca = keywarden_sim::TestCa::new("keywarden test PostgreSQL CA").unwrap();
    let (cert, key) = ca.server_pem(&["localhost".to_owned()]).unwrap();
    let Some(pg) = support::pg::PgServer::start_tls(&cert, &key) else {
        eprintln!(
            "SKIPPED tls_is_verified_against_the_ca_file_and_the_host_name: no PostgreSQL server binaries"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("db-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let url = |host: &str| {
        keywarden::secret::Secret::new(format!(
            "postgres://{}:{PG_PASSWORD}@{host}:{}/postgres",
            support::pg::PG_USER,
            pg.port
        ))
    };
    let mut config = pg.config("postgres", "tls-agent");
    config.tls = true;

    // The private CA and the certificate's name: connected, and encrypted.
    config.url = url("localhost");
    config.ca_file = Some(ca_file.clone());
    let connector = PgConnector::from_config(&config).unwrap();
    let (client, _task) = within("TLS connect", connector.dedicated())
        .await
        .expect("verified TLS connects");
    let encrypted: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted, "the session is TLS");

    // Without the private CA: the chain does not verify.
    config.ca_file = None;
    let connector = PgConnector::from_config(&config).unwrap();
    let error = within("unknown issuer", connector.dedicated())
        .await
        .expect_err("an unknown issuer is refused")
        .to_string();
    assert!(
        error.contains("TLS") && error.contains("UnknownIssuer"),
        "{error}"
    );

    // The CA, but a host name the certificate does not carry.
    config.ca_file = Some(ca_file);
    config.url = url("127.0.0.1");
    let connector = PgConnector::from_config(&config).unwrap();
    let error = within("wrong name", connector.dedicated())
        .await
        .expect_err("a certificate for another name is refused")
        .to_string();
    assert!(
        error.contains("TLS") && error.contains("not valid for name"),
        "{error}"
    );
    assert!(!error.contains(PG_PASSWORD), "{error}");
}
