//! Configuration: raw TOML structs, pure validation into a typed `Config`, secrets.
