//! `[agent] store` and `[store.postgres]`: which backend holds the state, and how to
//! reach PostgreSQL. The URL is read now (from its file or variable) and checked, so
//! `validate` catches what `run` would; no message ever holds the URL or its password.

use std::ops::Range;

use toml::Spanned;

use super::ctx::SecretFields;
use super::{Ctx, at, span_of};
use crate::config::raw::{RawPostgres, RawStore};
use crate::config::store::{PgConfig, SslMode, StoreChoice, check_url, default_agent_name};

/// Defaults of `[store.postgres]`.
pub const DEFAULT_SCHEMA: &str = "keywarden";
pub const DEFAULT_POOL_SIZE: usize = 8;

pub(super) fn store(
    ctx: &mut Ctx<'_>,
    choice: Option<&Spanned<String>>,
    raw: Option<&Spanned<RawStore>>,
) -> StoreChoice {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Sqlite,
        Postgres,
    }
    let kind = ctx.choice(
        choice,
        "agent.store",
        &[("sqlite", Kind::Sqlite), ("postgres", Kind::Postgres)],
        Kind::Sqlite,
    );
    let section = raw.and_then(|store| store.get_ref().postgres.as_ref());
    match (kind, section) {
        (Kind::Postgres, Some(section)) => postgres(ctx, section)
            .map(StoreChoice::Postgres)
            .unwrap_or(StoreChoice::Sqlite),
        (Kind::Postgres, None) => {
            ctx.error(
                choice.and_then(span_of),
                "agent.store",
                "store = \"postgres\" needs a [store.postgres] section with url_env or url_file",
            );
            StoreChoice::Sqlite
        }
        (Kind::Sqlite, Some(section)) => {
            ctx.warn(
                span_of(section),
                "store.postgres",
                "ignored: [agent] store is \"sqlite\" (set store = \"postgres\" to use it)",
            );
            StoreChoice::Sqlite
        }
        (Kind::Sqlite, None) => StoreChoice::Sqlite,
    }
}

fn postgres(ctx: &mut Ctx<'_>, section: &Spanned<RawPostgres>) -> Option<PgConfig> {
    let p = "store.postgres";
    let raw = section.get_ref();
    let table = span_of(section);
    let url = url(ctx, raw, table);
    let schema = match &raw.schema {
        Some(field) => identifier(ctx, field, &at(p, "schema")),
        None => DEFAULT_SCHEMA.to_owned(),
    };
    let pool_size = ctx.int_in(
        raw.pool_size.as_ref(),
        &at(p, "pool_size"),
        1..=64,
        DEFAULT_POOL_SIZE,
    );
    let ca_file = raw
        .ca_file
        .as_ref()
        .and_then(|field| super::servers::pem_file(ctx, field, p, "ca_file"));
    let agent_name = match &raw.agent_name {
        Some(field) => agent_name(ctx, field),
        None => default_agent_name(),
    };
    let (url, url_source, mode) = url?;
    if mode == SslMode::Disabled && ca_file.is_some() {
        ctx.warn(
            raw.ca_file.as_ref().and_then(span_of),
            at(p, "ca_file"),
            "unused: the URL says sslmode=disable (no TLS)",
        );
    }
    Some(PgConfig {
        url,
        url_source,
        schema,
        pool_size,
        ca_file,
        agent_name,
        tls: mode == SslMode::Verified,
    })
}

/// Exactly one of `url_env`, `url_file`; the URL read and checked.
fn url(
    ctx: &mut Ctx<'_>,
    raw: &RawPostgres,
    table: Option<Range<usize>>,
) -> Option<(crate::secret::Secret, crate::config::SecretSource, SslMode)> {
    let p = "store.postgres";
    match (&raw.url_env, &raw.url_file) {
        (None, None) => {
            ctx.error(
                table,
                p,
                "missing url: set exactly one of url_env or url_file (the connection URL is a secret, never written in this file)",
            );
            return None;
        }
        (Some(_), Some(file)) => {
            ctx.error(
                span_of(file),
                at(p, "url_file"),
                "url_file conflicts with url_env: set only one of url_env or url_file",
            );
            return None;
        }
        _ => {}
    }
    let (secret, source) = ctx.secret(
        SecretFields {
            base: "url",
            inline: None,
            file: raw.url_file.as_ref(),
            env: raw.url_env.as_ref(),
        },
        table,
        p,
        true,
    )?;
    let field = raw.url_env.as_ref().or(raw.url_file.as_ref());
    let key = if raw.url_env.is_some() {
        "url_env"
    } else {
        "url_file"
    };
    match check_url(secret.expose().trim()) {
        Ok(mode) => Some((
            crate::secret::Secret::new(secret.expose().trim()),
            source,
            mode,
        )),
        Err(message) => {
            ctx.error(field.and_then(span_of), at(p, key), message);
            None
        }
    }
}

/// A schema name used unquoted in SQL: lower case, digits and `_`, not `pg_*`.
fn identifier(ctx: &mut Ctx<'_>, field: &Spanned<String>, path: &str) -> String {
    let name = field.get_ref();
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with("pg_");
    if valid {
        return name.clone();
    }
    ctx.error(
        span_of(field),
        path,
        format!(
            "invalid schema name {name:?} (expected lower-case letters, digits and _, at most 63, not starting with a digit or pg_; default \"{DEFAULT_SCHEMA}\")"
        ),
    );
    DEFAULT_SCHEMA.to_owned()
}

/// Shown to other agents and in `pg_stat_activity`: printable ASCII, at most 63 bytes
/// (PostgreSQL cuts `application_name` there).
fn agent_name(ctx: &mut Ctx<'_>, field: &Spanned<String>) -> String {
    let name = field.get_ref().trim();
    if !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_graphic()) {
        return name.to_owned();
    }
    ctx.error(
        span_of(field),
        "store.postgres.agent_name",
        format!(
            "invalid agent name {:?} (expected 1 to 63 printable ASCII characters without spaces; default: the host name)",
            field.get_ref()
        ),
    );
    default_agent_name()
}
