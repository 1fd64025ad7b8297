//! The API client's decoders on arbitrary bytes: the typed decoders of the big answers
//! (under the tightest cap that would have let the bytes in), and every decoder of the
//! small answers when the bytes are JSON. None may panic; run with `-malloc_limit_mb` to
//! also catch a single allocation out of proportion to the input.
#![no_main]

use keywarden::server_api::{typed, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let cap = bytes.len().max(1024);
    let _ = typed::key_list(bytes, cap);
    let _ = typed::bulk_traffic(bytes, cap);
    let _ = typed::monitor_status(bytes, cap);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let _ = wire::api_status(&value);
        let _ = wire::vpn_key(&value, "key");
        let _ = wire::key_list(&value);
        let _ = wire::key_traffic(&value);
        let _ = wire::bulk_traffic(&value);
        let _ = wire::monitor_status(&value);
        let _ = wire::config_status(&value);
        let _ = wire::sync_validation(&value);
        let _ = wire::reset_confirmation(&value);
        let _ = wire::sync_outcome(&value);
        let _ = wire::reality_outcome(&value);
        let _ = wire::delete_confirmed(&value);
        let _ = wire::error_detail(&value);
        // Both entry points share one implementation: they must agree.
        let roomy = bytes.len() * 100 + 4096;
        assert_eq!(typed::key_list(bytes, roomy), wire::key_list(&value));
    }
});
