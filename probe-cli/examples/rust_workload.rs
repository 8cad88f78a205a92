//! A Rust program linking hakmem as its global allocator, with known counts, for
//! probe-cli's `run` tests: `rust_workload LARGE SMALL` makes LARGE 2 MiB vectors
//! (every page touched) and SMALL small ones.

#[global_allocator]
static ALLOCATOR: hakmem::Hakmem = hakmem::Hakmem;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("counts are integers"))
        .collect();
    let (large, small) = (
        args.first().copied().unwrap_or(8),
        args.get(1).copied().unwrap_or(1000),
    );
    for _ in 0..large {
        let mut v = vec![0u8; 2 << 20];
        for page in v.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(&v);
    }
    for i in 0..small {
        let v: Vec<u8> = Vec::with_capacity(1 + i % 256);
        std::hint::black_box(&v);
    }
}
