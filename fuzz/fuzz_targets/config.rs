//! Fuzz the configuration parser: any text must be accepted or rejected with errors, never panic, and
//! whatever parses must render (`render_effective`) to a file that parses back to the same
//! configuration.
//!
//! Two parts of a configuration legitimately differ after the round trip and are left out of the
//! comparison: the password, which is rendered masked, and the warnings, which carry line numbers of
//! the file they were found in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whpg_ha::config::{parse, Config, Secret};

/// The configuration with the parts that do not survive a render cleared.
fn comparable(config: &Config) -> Config {
    let mut config = config.clone();
    if config.vrrp.auth_pass.is_some() {
        config.vrrp.auth_pass = Some(Secret::new(Secret::MASK));
    }
    config.warnings.clear();
    config
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(config) = parse(text, Some("cdw")) else {
        return;
    };
    let rendered = config.render_effective();
    let reparsed = parse(&rendered, Some("cdw")).unwrap_or_else(|errors| {
        panic!("the rendered configuration does not parse:\n{rendered}\nerrors: {errors:?}")
    });
    assert_eq!(
        comparable(&reparsed),
        comparable(&config),
        "the rendered configuration parses differently:\n{rendered}"
    );
});
