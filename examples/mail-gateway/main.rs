//! The postern example mail gateway (placeholder while the session lands).
fn main() {}
