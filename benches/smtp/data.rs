use criterion::{Criterion, criterion_group};

fn bench(c: &mut Criterion) {
    let _ = c;
}

criterion_group!(benches, bench);
