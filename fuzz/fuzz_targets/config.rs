//! The configuration loader on arbitrary text: it never panics, and a refusal always
//! names at least one problem.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let env = |name: &str| name.ends_with("_KEY").then(|| "s3cret".to_owned());
    let origin = Path::new("/nonexistent/keywarden/agent.toml");
    if let Err(errors) = keywarden::config::from_str_with_env(&text, origin, &env) {
        assert!(!errors.problems.is_empty(), "refused without a reason");
    }
});
