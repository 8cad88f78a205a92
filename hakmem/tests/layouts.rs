//! Layouts under `#[global_allocator]`: `alloc_zeroed` returns zeroes even
//! when it reuses a dirty block, over-aligned layouts (32 B … 8 MiB) come back
//! aligned and usable, and the std collections work on top.

use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// Sizes around class, page-kind and large-block boundaries.
const SIZES: &[usize] = &[
    1,
    7,
    8,
    9,
    15,
    16,
    17,
    24,
    100,
    128,
    129,
    1000,
    4096,
    8 * KIB - 1,
    8 * KIB,
    8 * KIB + 1,
    10_000,
    64 * KIB,
    64 * KIB + 1,
    100_000,
    512 * KIB,
    512 * KIB + 1,
    MIB,
    3 * MIB + 5,
];

const ALIGNS: &[usize] = &[
    1,
    8,
    16,
    32,
    64,
    256,
    4096,
    8 * KIB,
    16 * KIB,
    64 * KIB,
    2 * MIB,
];

/// How many blocks of `size` to juggle at once: enough to cycle through a
/// page's free list, few enough to stay quick for big sizes.
fn count_for(size: usize) -> usize {
    match size {
        0..=1024 => 256,
        1025..=65536 => 32,
        _ => 4,
    }
}

fn check_zeroed(p: *mut u8, layout: Layout, what: &str) {
    assert!(!p.is_null(), "{what}: {layout:?} failed");
    assert_eq!(
        p as usize % layout.align(),
        0,
        "{what}: {layout:?} misaligned at {p:p}"
    );
    // SAFETY: a live block of layout.size() bytes.
    let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
    if let Some(i) = bytes.iter().position(|&b| b != 0) {
        panic!(
            "{what}: {layout:?} at {p:p} has {:#x} at byte {i}",
            bytes[i]
        );
    }
}

#[test]
fn alloc_zeroed_clears_reused_dirty_blocks() {
    for &size in SIZES {
        for &align in ALIGNS {
            let layout = Layout::from_size_align(size, align).unwrap();
            let n = count_for(size);
            for round in 0..2 {
                // Dirty blocks of exactly this layout, freed in allocation order...
                let dirty: Vec<*mut u8> = (0..n)
                    .map(|_| {
                        // SAFETY: non-zero size.
                        let p = unsafe { alloc(layout) };
                        assert!(!p.is_null());
                        // SAFETY: a fresh block of `size` bytes.
                        unsafe { p.write_bytes(0xa5, size) };
                        p
                    })
                    .collect();
                for &p in &dirty {
                    // SAFETY: allocated above with `layout`.
                    unsafe { dealloc(p, layout) };
                }
                // ...come back (LIFO free lists) through alloc_zeroed.
                let zeroed: Vec<*mut u8> = (0..n)
                    .map(|_| {
                        // SAFETY: non-zero size.
                        let p = unsafe { alloc_zeroed(layout) };
                        check_zeroed(p, layout, &format!("round {round}"));
                        p
                    })
                    .collect();
                if size <= 512 * KIB && align <= 8 * KIB {
                    // Class blocks: the dirty ones must actually have been reused.
                    let reused = zeroed.iter().filter(|p| dirty.contains(p)).count();
                    assert!(reused > 0, "{layout:?}: no dirty block was reused");
                }
                for p in zeroed {
                    // SAFETY: allocated above with `layout`.
                    unsafe { dealloc(p, layout) };
                }
            }
        }
    }
}

#[test]
fn zeroed_vectors_over_dirty_memory() {
    // vec![0; n] goes through alloc_zeroed; fill, drop and repeat at the same size.
    for &n in &[10usize, 1000, 50_000, 700_000, 5_000_000] {
        for _ in 0..3 {
            let v = vec![0u32; n];
            assert!(v.iter().all(|&x| x == 0), "vec![0u32; {n}] not zeroed");
            let mut v = v;
            v.iter_mut().for_each(|x| *x = 0xdead_beef);
            drop(v);
        }
    }
}

#[test]
fn over_aligned_layouts_are_aligned_and_usable() {
    let aligns = (5..=23).map(|s| 1usize << s); // 32 B … 8 MiB
    for align in aligns {
        for &size in &[1usize, 8, 24, 100, 4096, 100_000, 600 * KIB, 3 * MIB] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let n = if align >= MIB || size >= MIB { 2 } else { 16 };
            let blocks: Vec<*mut u8> = (0..n)
                .map(|i| {
                    // SAFETY: non-zero size.
                    let p = unsafe { alloc(layout) };
                    assert!(!p.is_null(), "{layout:?} failed");
                    assert_eq!(p as usize % align, 0, "{layout:?} misaligned: {p:p}");
                    assert!(hakmem::owns(p), "{layout:?}: {p:p} not hakmem's");
                    // SAFETY: a live hakmem block.
                    let usable = unsafe { hakmem::usable_size(p) };
                    assert!(usable >= size, "{layout:?}: usable {usable} < size");
                    // SAFETY: the block holds `size` bytes.
                    unsafe { p.write_bytes(i as u8, size) };
                    p
                })
                .collect();
            for (i, &p) in blocks.iter().enumerate() {
                // SAFETY: live blocks of `size` bytes, written above.
                let bytes = unsafe { std::slice::from_raw_parts(p, size) };
                assert!(
                    bytes.iter().all(|&b| b == i as u8),
                    "{layout:?}: blocks overlap"
                );
                // SAFETY: allocated above with `layout`.
                unsafe { dealloc(p, layout) };
            }
        }
    }
}

#[test]
fn small_blocks_have_malloc_alignment() {
    // 8 for blocks of 8 bytes or less, 16 above, without asking for it.
    let mut keep = Vec::new();
    for size in 1..=300usize {
        let layout = Layout::from_size_align(size, 1).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        let want = if size <= 8 { 8 } else { 16 };
        assert_eq!(p as usize % want, 0, "size {size} at {p:p}");
        keep.push((p, layout));
    }
    for (p, layout) in keep {
        // SAFETY: allocated above with `layout`.
        unsafe { dealloc(p, layout) };
    }
    // Types that need 16-byte alignment for tiny sizes.
    #[repr(align(16))]
    struct Tiny(u8);
    let v: Vec<Box<Tiny>> = (0..1000).map(|i| Box::new(Tiny(i as u8))).collect();
    for (i, b) in v.iter().enumerate() {
        assert_eq!(&**b as *const Tiny as usize % 16, 0);
        assert_eq!(b.0, i as u8);
    }
}

#[test]
fn many_live_page_aligned_blocks_are_distinct() {
    #[repr(C, align(4096))]
    struct PageAligned([u8; 100]);
    let blocks: Vec<Box<PageAligned>> = (0..2000)
        .map(|i| Box::new(PageAligned([i as u8; 100])))
        .collect();
    let mut addrs: Vec<usize> = blocks.iter().map(|b| &**b as *const _ as usize).collect();
    assert!(addrs.iter().all(|a| a % 4096 == 0));
    addrs.sort_unstable();
    assert!(
        addrs.windows(2).all(|w| w[1] - w[0] >= 4096),
        "page-aligned blocks overlap"
    );
    for (i, b) in blocks.iter().enumerate() {
        assert!(b.0.iter().all(|&x| x == i as u8));
    }
}

#[test]
fn std_collections_work() {
    let mut map: HashMap<String, Vec<u64>> = HashMap::new();
    for i in 0..20_000u64 {
        map.insert(format!("key-{i}"), (0..i % 50).map(|j| i * j).collect());
    }
    for i in (0..20_000u64).step_by(3) {
        map.remove(&format!("key-{i}"));
    }
    for i in 0..20_000u64 {
        match map.get(&format!("key-{i}")) {
            Some(v) => {
                assert!(i % 3 != 0);
                assert_eq!(v.len() as u64, i % 50);
                assert!(v.iter().enumerate().all(|(j, &x)| x == i * j as u64));
            }
            None => assert_eq!(i % 3, 0),
        }
    }

    let mut tree = BTreeMap::new();
    for i in 0..50_000u32 {
        tree.insert(i.wrapping_mul(2_654_435_761), i.to_string());
    }
    assert_eq!(tree.len(), 50_000);
    assert!(tree
        .iter()
        .all(|(k, v)| k.wrapping_mul(244_002_641) == v.parse::<u32>().unwrap()));

    let set: HashSet<Box<[u8]>> = (0..5000usize)
        .map(|i| vec![i as u8; i % 700 + 1].into())
        .collect();
    assert_eq!(set.len(), 5000);

    let mut dq: VecDeque<String> = VecDeque::new();
    for i in 0..100_000 {
        dq.push_back(i.to_string());
        if i % 3 == 0 {
            let front = dq.pop_front().unwrap();
            front.parse::<u32>().unwrap();
        }
    }

    let mut s = String::new();
    for i in 0..100_000 {
        s.push_str(&i.to_string());
    }
    assert!(s.starts_with("0123456789101112"));
    assert!(s.ends_with("99999"));

    let rc = Rc::new(vec![1u8; 1000]);
    let rcs: Vec<_> = (0..100).map(|_| Rc::clone(&rc)).collect();
    assert_eq!(Rc::strong_count(&rc), 101);
    drop(rcs);
    let arc = Arc::new([7u64; 10_000]);
    let sum: u64 = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|_| sc.spawn(|| Arc::clone(&arc).iter().sum::<u64>()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(sum, 2 * 7 * 10_000);

    let big: Box<[u64]> = vec![3u64; 4 * MIB].into_boxed_slice();
    assert_eq!(big.iter().sum::<u64>(), 12 * MIB as u64);
}
