//! POP3 benches, side by side with rfc1939 1.0 and pop3-codec 0.3 (placeholder).
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let _ = c;
}

criterion_group!(benches, bench);
criterion_main!(benches);
