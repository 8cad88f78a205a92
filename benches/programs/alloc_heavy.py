"""hakmem-bench programs: python3's workload (run with PYTHONMALLOC=malloc, so
every object goes through the allocator under test).

Builds and drops dicts, strings, JSON text and byte buffers (4 KiB to 1 MiB),
keeping a growing index: the pattern of a typical Python service.
Usage: alloc_heavy.py ROUNDS OBJECTS. Prints one JSON line: operations per
second and the resident set after everything was freed.
"""
import gc
import json
import sys
import time

rounds, objects = int(sys.argv[1]), int(sys.argv[2])


def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


start, ops = time.monotonic(), 0
keep = []
for r in range(rounds):
    objs = [{"id": i, "name": "item-%d" % i, "tags": [str(j) for j in range(i % 9)], "v": i * 1.5}
            for i in range(objects)]
    text = json.dumps(objs)
    back = json.loads(text)
    bufs = [bytearray((i % 64 + 1) * 4096) for i in range(200)] + [bytearray(1 << 20) for _ in range(16)]
    words = " ".join(o["name"] for o in back).split()
    keep.append(words[::100])
    ops += len(objs) + len(back) + len(bufs) + len(words)
    del objs, text, back, bufs, words
elapsed = time.monotonic() - start
del keep
gc.collect()
print(json.dumps({"ops_per_s": ops / elapsed, "rss_after_kib": rss_kib()}))
