//! Where the state lives: `[agent] store` picks the backend, `[store.postgres]` says how
//! to reach PostgreSQL (issue 13). The connection URL is a secret (it may hold a
//! password): it is kept in a `Secret`, and every error about it goes through
//! `PgConfig::redactor`, which blots out the URL and its password in every form.

use std::path::PathBuf;

use crate::redact::Redactor;
use crate::secret::Secret;

use super::types::SecretSource;

/// `[agent] store`: which backend holds the state.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreChoice {
    /// The embedded SQLite file in `[agent] state_dir` (the default).
    Sqlite,
    /// A shared PostgreSQL schema (`[store.postgres]`).
    Postgres(PgConfig),
}

impl StoreChoice {
    /// "sqlite" or "postgres", as written in the file.
    pub fn name(&self) -> &'static str {
        match self {
            StoreChoice::Sqlite => "sqlite",
            StoreChoice::Postgres(_) => "postgres",
        }
    }

    /// The PostgreSQL settings, when that is the backend.
    pub fn postgres(&self) -> Option<&PgConfig> {
        match self {
            StoreChoice::Sqlite => None,
            StoreChoice::Postgres(pg) => Some(pg),
        }
    }
}

/// `[store.postgres]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PgConfig {
    /// The connection URL (`postgres://user:password@host:port/db?...`). Secret.
    pub url: Secret,
    /// Where the URL was read from (for summaries).
    pub url_source: SecretSource,
    /// The schema holding keywarden's tables (a plain identifier).
    pub schema: String,
    /// Pooled connections at most (the dedicated leadership connection comes on top).
    pub pool_size: usize,
    /// Extra root CA (PEM) trusted for the server's certificate (checked readable at load).
    pub ca_file: Option<PathBuf>,
    /// This agent's name as other agents see it (`agents` table, `application_name`).
    pub agent_name: String,
    /// TLS with the chain and host name verified (`sslmode=verify-full` semantics);
    /// false only when the URL says `sslmode=disable`.
    pub tls: bool,
}

impl PgConfig {
    /// A redactor for the URL and the password in it: driver errors may echo either.
    pub fn redactor(&self) -> Redactor {
        let secrets = self.secrets();
        Redactor::new(secrets.iter().map(String::as_str))
    }

    /// The secret texts: the URL, and its password as written and decoded.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![self.url.expose().to_owned()];
        secrets.extend(password_of(self.url.expose()));
        secrets
    }

    /// The URL without its `sslmode` (decided by `tls`), as the driver parses it.
    pub fn driver_url(&self) -> Secret {
        Secret::new(split_sslmode(self.url.expose()).0)
    }
}

/// How the URL asks for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Not given, `require`, `verify-ca` or `verify-full`: TLS, chain and host verified.
    Verified,
    /// `sslmode=disable`: plain TCP (loopback tests, or a socket the operator trusts).
    Disabled,
}

/// Check a connection URL; the error never holds the URL or its password.
pub fn check_url(url: &str) -> Result<SslMode, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(
            "not a PostgreSQL URL (expected postgres://user:password@host:5432/database)"
                .to_owned(),
        );
    }
    let (rest, sslmode) = split_sslmode(url);
    let mode = match sslmode.as_deref() {
        None | Some("require" | "verify-ca" | "verify-full") => SslMode::Verified,
        Some("disable") => SslMode::Disabled,
        Some("prefer" | "allow") => {
            return Err(format!(
                "sslmode={} would fall back to an unencrypted connection: leave sslmode out (TLS, verified) or say sslmode=disable explicitly",
                sslmode.unwrap_or_default()
            ));
        }
        Some(other) => {
            return Err(format!(
                "unknown sslmode {other:?} (expected verify-full, verify-ca, require or disable)"
            ));
        }
    };
    let parsed: Result<tokio_postgres::Config, _> = rest.parse();
    match parsed {
        Ok(config) if config.get_hosts().is_empty() => {
            Err("the URL names no host (postgres://user@host:5432/database)".to_owned())
        }
        Ok(_) => Ok(mode),
        Err(error) => {
            let mut secrets = vec![url.to_owned()];
            secrets.extend(password_of(url));
            let redactor = Redactor::new(secrets.iter().map(String::as_str));
            Err(format!(
                "not a valid PostgreSQL URL: {}",
                redactor.redact(&error.to_string())
            ))
        }
    }
}

/// The URL without its `sslmode` parameter, and that parameter's value.
fn split_sslmode(url: &str) -> (String, Option<String>) {
    // The query starts after the authority: a '?' inside a password is not one.
    let authority_end = url.rfind('@').unwrap_or(0);
    let Some(query_at) = url[authority_end..].find('?').map(|i| authority_end + i) else {
        return (url.to_owned(), None);
    };
    let (base, query) = (&url[..query_at], &url[query_at + 1..]);
    let mut sslmode = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some(("sslmode", value)) => {
                sslmode = Some(value.to_owned());
                false
            }
            _ => !pair.is_empty(),
        })
        .collect();
    if kept.is_empty() {
        (base.to_owned(), sslmode)
    } else {
        (format!("{base}?{}", kept.join("&")), sslmode)
    }
}

/// The password in a URL, as written and percent-decoded.
fn password_of(url: &str) -> Vec<String> {
    let Some(after_scheme) = url.split_once("://").map(|(_, rest)| rest) else {
        return Vec::new();
    };
    let Some(userinfo) = after_scheme.rsplit_once('@').map(|(info, _)| info) else {
        return Vec::new();
    };
    let Some(password) = userinfo.split_once(':').map(|(_, password)| password) else {
        return Vec::new();
    };
    let decoded = percent_encoding::percent_decode_str(password)
        .decode_utf8_lossy()
        .into_owned();
    vec![password.to_owned(), decoded]
}

/// The default agent name: this host's name.
pub fn default_agent_name() -> String {
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "keywarden".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_taken_out_of_the_url_and_decides_tls() {
        let url = "postgres://kw:s3cr%3Ft@db.example.net:5432/kw?sslmode=disable&connect_timeout=5";
        assert_eq!(check_url(url), Ok(SslMode::Disabled));
        assert_eq!(
            split_sslmode(url),
            (
                "postgres://kw:s3cr%3Ft@db.example.net:5432/kw?connect_timeout=5".to_owned(),
                Some("disable".to_owned())
            )
        );
        assert_eq!(
            check_url("postgres://kw@db/kw?sslmode=verify-full"),
            Ok(SslMode::Verified)
        );
        assert_eq!(check_url("postgresql://kw@db/kw"), Ok(SslMode::Verified));
        let prefer = check_url("postgres://kw@db/kw?sslmode=prefer").unwrap_err();
        assert!(prefer.contains("unencrypted"), "{prefer}");
    }

    #[test]
    fn errors_never_hold_the_password() {
        let url = "postgres://kw:hunter2-pg-secret@db:5432/kw?bogus_option=1";
        let error = check_url(url).unwrap_err();
        assert!(!error.contains("hunter2-pg-secret"), "{error}");
        let error = check_url("mysql://kw:hunter2-pg-secret@db/kw").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
        assert_eq!(
            password_of("postgres://kw:a%40b-long@db/kw"),
            vec!["a%40b-long".to_owned(), "a@b-long".to_owned()]
        );
    }
}
