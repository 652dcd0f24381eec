//! `Command::parse` on arbitrary bytes: never panics, and whatever parses survives the
//! `Display` round trip (`parse(cmd.to_string()) == cmd`, and the text is a fixed point).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::smtp::command::{Command, decode_xtext};

fuzz_target!(|line: &[u8]| {
    let Ok(cmd) = Command::parse(line) else { return };
    let text = cmd.to_string();
    assert!(!text.contains(['\r', '\n']), "Display wrote a line break: {text:?}");
    let again = Command::parse(text.as_bytes());
    assert_eq!(again.as_ref(), Ok(&cmd), "{:?} -> {text:?}", String::from_utf8_lossy(line));
    assert_eq!(again.map(|c| c.to_string()).as_deref(), Ok(text.as_str()), "not a fixed point");
    // xtext values decode without panicking.
    if let Command::Mail { params, .. } = &cmd {
        let _ = params.envid.map(decode_xtext);
        let _ = params.auth.map(decode_xtext);
    }
    if let Command::Rcpt { params, .. } = &cmd {
        let _ = params.orcpt.map(|(_, x)| decode_xtext(x));
    }
});
