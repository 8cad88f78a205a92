//! Free large memory goes back to the OS while the program is idle, with no
//! allocator call (issue 13, item 5: the background purge thread), and stays
//! when `HAKMEM_BACKGROUND_PURGE=0`. Each case runs in a child process.

use std::process::Command;
use std::time::Duration;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const PAGE: usize = 4096;

/// Frees 48 MiB of written blocks below the BigCache's range (so they go to
/// the span level at once), then sleeps without allocating.
fn idle() -> (u64, u64) {
    let blocks: Vec<usize> = (0..64)
        .map(|_| {
            let p = hakmem::alloc_at(768 << 10, 0x1d);
            assert!(!p.is_null());
            for off in (0..(768 << 10)).step_by(PAGE) {
                // SAFETY: inside the block.
                unsafe { p.add(off).write_volatile(1) };
            }
            p as usize
        })
        .collect();
    for &p in &blocks {
        // SAFETY: live blocks.
        unsafe { hakmem::free(p as *mut u8) };
    }
    let before = hakmem::os::process_rss();
    std::thread::sleep(Duration::from_millis(600));
    let after = hakmem::os::process_rss();
    (before >> 20, after >> 20)
}

#[test]
fn child_entry() {
    if std::env::var_os("IDLE_PURGE_CHILD").is_none() {
        return;
    }
    let (before, after) = idle();
    println!("RESULT before={before} after={after}");
}

fn run(env: &[(&str, &str)]) -> (u64, u64) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env("IDLE_PURGE_CHILD", "1")
        .env_remove("HAKMEM_BACKGROUND_PURGE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find_map(|l| l.find("RESULT ").map(|i| &l[i + 7..])).expect("result line");
    let v: Vec<u64> = line.split_whitespace().map(|kv| kv.split_once('=').unwrap().1.parse().unwrap()).collect();
    (v[0], v[1])
}

#[test]
fn idle_memory_goes_back_without_an_allocator_call() {
    let (before, after) = run(&[]);
    assert!(before >= after + 40, "RSS {before} MiB -> {after} MiB while idle");
}

#[test]
fn without_the_background_thread_it_stays_until_the_next_call() {
    let (before, after) = run(&[("HAKMEM_BACKGROUND_PURGE", "0")]);
    assert!(after + 8 >= before, "RSS {before} MiB -> {after} MiB with the thread off");
}
