//! A Rust program linking hakmem as its global allocator, with known counts, for
//! probe-cli's tests: `rust_workload LARGE SMALL [--wait]` makes LARGE 2 MiB vectors
//! (every page touched) and SMALL small ones. With `--wait` it prints "ready",
//! waits for a byte on stdin before the work, prints "done" and waits for EOF
//! (so a tracer can attach to a quiet process and read it before it exits).

use std::io::{Read, Write};

#[global_allocator]
static ALLOCATOR: hakmem::Hakmem = hakmem::Hakmem;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = |i: usize, default| {
        args.get(i).map_or(default, |a: &String| {
            a.parse().expect("counts are integers")
        })
    };
    let (large, small): (usize, usize) = (count(0, 8), count(1, 1000));
    let wait = args.get(2).is_some_and(|a| a == "--wait");
    let mut stdin = std::io::stdin();
    let mut byte = [0u8; 1];
    if wait {
        println!("ready");
        std::io::stdout().flush().unwrap();
        stdin.read_exact(&mut byte).expect("a go byte");
    }
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
    if wait {
        println!("done");
        std::io::stdout().flush().unwrap();
        while stdin.read(&mut byte).unwrap_or(0) > 0 {}
    }
}
