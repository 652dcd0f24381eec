//! SMTP benches, side by side with smtp-proto 0.2.5 on the same inputs.
//!
//! Run with `cargo bench --bench smtp`. See benches/README.md for the measured ratios.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "smtp/commands.rs"]
mod commands;
#[path = "smtp/data.rs"]
mod data;

criterion::criterion_main!(commands::benches, data::benches);
