//! Huge-page strategies only where the kernel gives huge pages (issue 13,
//! item 3): a kernel that refuses them (injected with `HAKMEM_THP=refuse`)
//! moves the default off `hugepage` and keeps both huge-page strategies out
//! of exploration; one that grants them (`HAKMEM_THP=grant`) keeps `hugepage`
//! the default and explored. Each case runs in a child process (the answer
//! is measured once per process); a third case shows the learned best
//! moving off `hugepage` when the kernel's answer changes to a refusal.

use hakmem::large::elo::{self, STRATEGIES};
use hakmem::large::evolution::{self, Phase};
mod common;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const MIB: usize = 1 << 20;

/// Varied large blocks, a few pages of each written, 8 live: every
/// allocation maps a new span (the BigCache is off in the child), so every
/// one is a strategy choice.
fn churn() {
    let mut live: Vec<usize> = vec![0; 8];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..1500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = MIB + (x % (3 * MIB as u64)) as usize;
        let p = hakmem::alloc_at(size, 0x51);
        assert!(!p.is_null());
        for off in (0..size).step_by(256 << 10) {
            // SAFETY: inside the block.
            unsafe { p.add(off).write_volatile(1) };
        }
        let slot = i % live.len();
        if live[slot] != 0 {
            // SAFETY: a live block of this test.
            unsafe { hakmem::free(live[slot] as *mut u8) };
        }
        live[slot] = p as usize;
    }
    for p in live {
        // SAFETY: live blocks.
        unsafe { hakmem::free(p as *mut u8) };
    }
}

#[test]
fn child_entry() {
    if std::env::var_os("THP_STRATEGY_CHILD").is_none() {
        return;
    }
    churn();
    let s = hakmem::stats().large;
    let huge: u64 = STRATEGIES
        .iter()
        .zip(s.uses)
        .filter(|(st, _)| st.hugepage)
        .map(|(_, n)| n)
        .sum();
    let v = s.thp.expect("measured at the first large allocation");
    println!(
        "RESULT granted={} default={} best={} huge_uses={} all_uses={}",
        v.granted as u8,
        STRATEGIES[elo::default_strategy() as usize].name,
        // Every band's choice (a band without blocks keeps the default).
        s.bands
            .iter()
            .map(|b| STRATEGIES[b.strategy as usize].name)
            .collect::<Vec<_>>()
            .join(","),
        huge,
        s.uses.iter().sum::<u64>()
    );
}

fn run(thp: &str) -> common::Child {
    let c = common::run_child(
        ("THP_STRATEGY_CHILD", "1"),
        &[("HAKMEM_THP", thp), ("HAKMEM_BIGCACHE", "off")],
    );
    c.assert_success(thp);
    c
}

fn get<'a>(r: &'a common::Child, k: &str) -> &'a str {
    r.str(k)
}

#[test]
fn a_refusing_kernel_moves_the_choice_off_hugepage() {
    let r = run("refuse");
    assert_eq!(get(&r, "granted"), "0");
    assert_eq!(get(&r, "default"), "plain", "{r:?}");
    assert!(!get(&r, "best").contains("hugepage"), "{r:?}");
    assert_eq!(
        get(&r, "huge_uses"),
        "0",
        "huge-page strategies explored: {r:?}"
    );
    assert!(get(&r, "all_uses").parse::<u64>().unwrap() >= 1500);
}

#[test]
fn a_granting_kernel_keeps_hugepage_eligible() {
    let r = run("grant");
    assert_eq!(get(&r, "granted"), "1");
    assert_eq!(get(&r, "default"), "hugepage", "{r:?}");
    // 1,500 choices while learning, 10% of them explored uniformly: the two
    // huge-page strategies get about 50 of them unless they are the best.
    let huge: u64 = get(&r, "huge_uses").parse().unwrap();
    assert!(huge >= 10, "huge-page strategies not explored: {r:?}");
}

/// In this process: ratings learned on a granting kernel make `hugepage`
/// the best; the kernel's answer turns to a refusal and the best moves to
/// the cheapest eligible strategy, and exploration never returns to it.
#[test]
fn the_learned_best_moves_off_hugepage_when_the_kernel_refuses() {
    hakmem::thp::set_for_test(true);
    evolution::reset_for_test(Phase::Learn);
    let r = evolution::ratings(evolution::band_of(4 << 20));
    // hugepage cheapest, slack second.
    let cost = |s: usize| match STRATEGIES[s].name {
        "hugepage" => 1_000,
        "slack" => 3_000,
        _ => 10_000,
    };
    // Opponents from a generator, not from `i`: with `i % N` choosing the
    // strategy, a multiple of `i` can pair a strategy with some opponents only.
    let mut opp = elo::Rng(11);
    for i in 0..600u64 {
        let s = (i % elo::N as u64) as usize;
        // Only what learning can choose plays (not `purge-on-cache` beside
        // the background purge thread).
        if !r.is_eligible(s) {
            continue;
        }
        r.record(s, cost(s), r.random_opponent(s, opp.next()));
    }
    assert_eq!(STRATEGIES[r.best() as usize].name, "hugepage");
    hakmem::thp::set_for_test(false);
    r.configure(elo::eligible_mask(), elo::default_strategy());
    assert_eq!(STRATEGIES[r.best() as usize].name, "slack");
    let mut rng = elo::Rng(7);
    for _ in 0..10_000 {
        let s = elo::select_learning(r, &mut rng) as usize;
        assert!(!STRATEGIES[s].hugepage, "explored {}", STRATEGIES[s].name);
        assert!(!STRATEGIES[r.random_opponent(s, rng.next())].hugepage);
    }
    evolution::reset_for_test(Phase::Learn);
}
