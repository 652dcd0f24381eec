//! `pop3::command::Command::parse` on arbitrary bytes: never panics, and whatever parses
//! reads back equal from its canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::pop3::command::Command;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = Command::parse(data) {
        let text = cmd.to_string();
        assert_eq!(Command::parse(text.as_bytes()), Ok(cmd), "{text:?}");
    }
});
