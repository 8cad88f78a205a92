#!/usr/bin/env bash
# Production-like runs: real programs through LD_PRELOAD with hakmem (per-thread
# BigCache), hakmem (HAKMEM_BIGCACHE=global), Debian's mimalloc, jemalloc and
# tcmalloc, and glibc; then the hakmem runs again under `probe-cli run`.
#
#   scripts/production-compare.sh [--quick] [--runs N] [--out DIR] [--allocators a,b,...] [--no-trace]
#
# Workloads (bounded; the full run takes a few minutes, --quick about one):
#   redis     redis-server on 127.0.0.1 and a free port, driven by redis-benchmark
#             (-q --csv, bounded request counts, always under `timeout`): small
#             values (SET/GET/LPUSH/LPOP/INCR) and 1 MiB values (SET/GET: large blocks,
#             the BigCache's case). Throughput, p99 latency, server peak and final RSS.
#   xz        `xz -T2 -2` compressing a generated file (two threads, buffers of many
#             MiB): MB/s, peak RSS, RSS at the end (sampled every 10 ms).
#   python    /usr/bin/python3 with PYTHONMALLOC=malloc (every object through the
#             allocator under test) building and dropping dicts, strings, JSON and
#             byte buffers: operations/s, peak RSS, RSS after it freed everything.
# Redis links Debian's libjemalloc, so "glibc" preloads libc.so.6 itself, which puts
# glibc's malloc first; every run checks (LD_DEBUG=bindings) which library really
# serves malloc and the report names it.
#
# Writes DIR/production.md (the report), DIR/production.svg (grouped bars),
# DIR/production.json (every sample) and DIR/trace-*.json (probe-cli reports).
# Default DIR: target/production. Needs root for the traces (else they are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0 runs="" out=target/production allocators="" trace=1
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --runs) runs=${2:?--runs needs a number}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --allocators) allocators=${2:?--allocators needs a list}; shift 2 ;;
    --no-trace) trace=0; shift ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "production-compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case ${runs:-1} in ''|*[!0-9]*|0) echo "production-compare.sh: --runs must be a positive integer" >&2; exit 2 ;; esac
for tool in redis-server redis-benchmark redis-cli xz timeout; do
  command -v "$tool" >/dev/null || { echo "production-compare.sh: $tool missing (scripts/deps.sh installs it)" >&2; exit 1; }
done

# The programs must see only what each run sets.
for v in $(env | grep -o '^HAKMEM_[A-Za-z0-9_]*' || true); do unset "$v"; done
unset LD_PRELOAD

target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release -p hakmem-preload -p probe-cli >&2
mkdir -p "$out"

work=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-production.XXXXXX")
cat >"$work/compare.py" <<'PY'
"""Runs the workloads, samples RSS, writes the report (see production-compare.sh)."""
import csv, ctypes, io, json, os, platform, signal, socket, statistics, subprocess, sys, threading, time

quick, runs, out, only, trace, target_dir, work = sys.argv[1:8]
quick, trace = quick == "1", trace == "1"
runs = int(runs) if runs else (1 if quick else 2)
root = os.getcwd()
probe_cli = os.path.join(root, target_dir, "release", "probe-cli")
hakmem = os.path.join(root, target_dir, "release", "libhakmem.so")
multiarch = "/usr/lib/%s-linux-gnu" % platform.machine()
libc = next(p for p in ("/lib/%s-linux-gnu/libc.so.6" % platform.machine(), "/lib64/libc.so.6", "/lib/libc.so.6") if os.path.exists(p))

# name, preload, extra environment, label
ALLOCATORS = [
    ("hakmem", hakmem, {"HAKMEM_BIGCACHE": "thread"}, "hakmem (per-thread BigCache)"),
    ("hakmem-global", hakmem, {"HAKMEM_BIGCACHE": "global"}, "hakmem (global BigCache)"),
    ("mimalloc", multiarch + "/libmimalloc.so.2", {}, "mimalloc (Debian)"),
    ("jemalloc", multiarch + "/libjemalloc.so.2", {}, "jemalloc (Debian)"),
    ("tcmalloc", multiarch + "/libtcmalloc_minimal.so.4", {}, "tcmalloc (Debian, minimal)"),
    ("glibc", libc, {}, "glibc"),
]
if only:
    wanted = only.split(",")
    unknown = [w for w in wanted if w not in [a[0] for a in ALLOCATORS]]
    if unknown:
        sys.exit("production-compare.sh: unknown allocator(s) %s (known: %s)" % (", ".join(unknown), ", ".join(a[0] for a in ALLOCATORS)))
    ALLOCATORS = [a for a in ALLOCATORS if a[0] in wanted]
missing = [(a[0], a[1]) for a in ALLOCATORS if not os.path.exists(a[1])]
ALLOCATORS = [a for a in ALLOCATORS if os.path.exists(a[1])]
for name, lib in missing:
    print("production-compare.sh: %s: %s not found, skipped" % (name, lib), file=sys.stderr)

SIZES = {
    "redis_small_n": 20000 if quick else 30000,
    "redis_large_n": 200 if quick else 1000,
    "xz_mib": 2 if quick else 6,
    "python_rounds": 3 if quick else 8,
}

def log(msg):
    print("production-compare.sh: " + msg, file=sys.stderr, flush=True)

def env_for(alloc, extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAKMEM_") and k != "LD_PRELOAD"}
    env["LD_PRELOAD"] = alloc[1]
    env.update(alloc[2])
    env.update(extra or {})
    return env

def malloc_provider(alloc, argv):
    """The library LD_DEBUG says the program's own malloc binds to."""
    env = env_for(alloc, {"LD_DEBUG": "bindings"})
    try:
        r = subprocess.run(argv, env=env, capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "?"
    names = ("binding file %s " % argv[0], "binding file %s " % os.path.basename(argv[0]))
    found = "?"
    for line in r.stderr.decode(errors="replace").splitlines():
        if line.split(":", 1)[-1].lstrip().startswith(names) and "symbol `malloc'" in line:
            target = line.split(" to ", 1)[1].split(" [")[0]
            # A non-PIE program's own PLT slot is the canonical address; the
            # binding after it is the library that really serves the call.
            if os.path.basename(target) != os.path.basename(argv[0]):
                found = os.path.basename(target)
    return found

class Sampler:
    """Polls a process's VmRSS/VmHWM every 10 ms until it exits."""
    def __init__(self, pid):
        self.pid, self.peak, self.last, self.stop = pid, 0, 0, False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
    def read(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                st = dict(l.split(":", 1) for l in f if ":" in l)
            rss = int(st["VmRSS"].split()[0]); hwm = int(st["VmHWM"].split()[0])
            # A zombie has no mm: keep the last live figures.
            if rss > 0:
                self.last, self.peak = rss, max(self.peak, hwm)
        except (OSError, KeyError, ValueError):
            pass
    def run(self):
        while not self.stop:
            self.read()
            time.sleep(0.01)
    def finish(self):
        self.stop = True
        self.thread.join()

def run_batch(alloc, argv, timeout, extra_env=None, stdout=subprocess.DEVNULL):
    """Runs a program to its end: wall s, peak RSS KiB (wait4), last sampled RSS KiB, stdout."""
    start = time.monotonic()
    p = subprocess.Popen(argv, env=env_for(alloc, extra_env), stdout=stdout, stderr=subprocess.PIPE,
                         preexec_fn=die_with_parent)
    s = Sampler(p.pid)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    out = p.stdout.read() if p.stdout else b""
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = status
    wall = time.monotonic() - start
    timer.cancel()
    s.finish()
    if status != 0:
        raise RuntimeError("%s with %s failed (status %d): %s" % (argv[0], alloc[0], status, err.decode(errors="replace").strip()[-300:]))
    return wall, usage.ru_maxrss, s.last, out.decode(errors="replace")

_libc = ctypes.CDLL(None, use_errno=True)

def die_with_parent():
    """In the child before exec: SIGTERM when this driver dies, however it dies."""
    _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

# ---------------------------------------------------------------- workloads

def redis_server_argv(port):
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--logfile", os.path.join(work, "redis.log"), "--protected-mode", "yes"]

def wait_for_redis(port, proc):
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError("redis-server exited at start (see %s/redis.log)" % work)
        try:
            r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, timeout=2)
            if r.stdout.strip() == b"PONG":
                return
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.05)
    raise RuntimeError("redis-server did not answer on port %d" % port)

def bench(port, args):
    """redis-benchmark -q --csv under timeout: {test: (rps, p99 ms)}."""
    r = subprocess.run(["timeout", "120", "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q", "--csv"] + args,
                       capture_output=True, timeout=130)
    if r.returncode != 0:
        raise RuntimeError("redis-benchmark %s: exit %d %s" % (" ".join(args), r.returncode, r.stderr.decode()[-200:]))
    rows = list(csv.DictReader(io.StringIO(r.stdout.decode())))
    return {row["test"]: (float(row["rps"]), float(row["p99_latency_ms"])) for row in rows}

def drive_redis(port):
    n, big = SIZES["redis_small_n"], SIZES["redis_large_n"]
    res = bench(port, ["-n", str(n), "-c", "16", "-d", "64", "-r", "10000", "-t", "set,get,lpush,lpop,incr"])
    large = bench(port, ["-n", str(big), "-c", "4", "-d", str(1 << 20), "-t", "set,get"])
    for k, v in large.items():
        res[k + " 1MiB"] = v
    return res

def stop_redis(port, proc):
    try:
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

live = []  # servers to kill if we are interrupted

def run_redis(alloc):
    port = free_port()
    proc = subprocess.Popen(redis_server_argv(port), env=env_for(alloc), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    live.append(proc)
    try:
        s = Sampler(proc.pid)
        wait_for_redis(port, proc)
        res = drive_redis(port)
        time.sleep(0.2)
        s.read()
        final = s.last
        s.finish()
        peak = s.peak
    finally:
        stop_redis(port, proc)
        live.remove(proc)
    metrics = {}
    for test, (rps, p99) in res.items():
        metrics["redis %s" % test] = {"throughput": rps, "unit": "req/s", "p99_ms": p99}
    return metrics, peak, final

def make_xz_input():
    path = os.path.join(work, "xz-input")
    if not os.path.exists(path):
        import random
        rnd = random.Random(42)
        words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(5000)]
        with open(path, "wb") as f:
            target = SIZES["xz_mib"] << 20
            while f.tell() < target:
                line = " ".join(rnd.choice(words) for _ in range(12)) + " %d\n" % rnd.getrandbits(40)
                f.write(line.encode() + (rnd.randbytes(32) if rnd.random() < 0.05 else b""))
    return path

def xz_argv():
    # To a file, not stdout: under `probe-cli run` stdout carries the report.
    return ["xz", "-T2", "-2", "-k", "-f", "-S", ".out", make_xz_input()]

def run_xz(alloc):
    wall, peak, final, _ = run_batch(alloc, xz_argv(), 300)
    mb = os.path.getsize(make_xz_input()) / 1e6
    return {"xz -T2 -2": {"throughput": mb / wall, "unit": "MB/s", "p99_ms": None}}, peak, final

PY_SCRIPT = r'''
import gc, json, os, sys, time
rounds = int(sys.argv[1])
def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
start, ops = time.monotonic(), 0
keep = []
for r in range(rounds):
    objs = [{"id": i, "name": "item-%d" % i, "tags": [str(j) for j in range(i % 9)], "v": i * 1.5} for i in range(40000)]
    text = json.dumps(objs)
    back = json.loads(text)
    bufs = [bytearray((i % 64 + 1) * 4096) for i in range(200)] + [bytearray(1 << 20) for _ in range(16)]
    words = " ".join(o["name"] for o in back).split()
    keep.append(words[:: 100])
    ops += len(objs) + len(back) + len(bufs) + len(words)
    del objs, text, back, bufs, words
elapsed = time.monotonic() - start
del keep
gc.collect()
print(json.dumps({"ops_per_s": ops / elapsed, "rss_after_kib": rss_kib()}))
'''

def python_argv(rounds):
    path = os.path.join(work, "alloc_heavy.py")
    with open(path, "w") as f:
        f.write(PY_SCRIPT)
    return ["/usr/bin/python3", path, str(rounds)]

def run_python(alloc):
    wall, peak, final, out = run_batch(alloc, python_argv(SIZES["python_rounds"]), 300,
                                       {"PYTHONMALLOC": "malloc"}, stdout=subprocess.PIPE)
    r = json.loads(out.strip().splitlines()[-1])
    return {"python3": {"throughput": r["ops_per_s"], "unit": "ops/s", "p99_ms": None}}, peak, r["rss_after_kib"]

WORKLOADS = [("redis", run_redis, ["redis-server", "--version"]),
             ("xz", run_xz, ["xz", "--version"]),
             ("python", run_python, ["/usr/bin/python3", "-c", "pass"])]

# ---------------------------------------------------------------- traces

def trace(alloc, workload):
    """The workload once under `probe-cli run --json`; returns its final report."""
    env = env_for(alloc)
    env.pop("LD_PRELOAD")  # probe-cli preloads libhakmem.so itself
    cmd = [probe_cli, "run", "--json", "--preload", alloc[1], "--"]
    if workload == "redis":
        port = free_port()
        p = subprocess.Popen(cmd + redis_server_argv(port), env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, preexec_fn=die_with_parent)
        live.append(p)
        try:
            wait_for_redis(port, p)
            drive_redis(port)
        finally:
            stop_redis(port, p)
            live.remove(p)
        out = p.stdout.read().decode()
    else:
        argv = xz_argv() if workload == "xz" else python_argv(max(1, SIZES["python_rounds"] // 4))
        extra = {"PYTHONMALLOC": "malloc"} if workload == "python" else {}
        env.update(extra)
        r = subprocess.run(cmd + argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600,
                           preexec_fn=die_with_parent)
        out = r.stdout.decode()
    reports = [l for l in out.splitlines() if l.startswith("{") and '"schema_version"' in l]
    if not reports:
        raise RuntimeError("probe-cli run gave no report for %s with %s" % (workload, alloc[0]))
    return json.loads(reports[-1])

def trace_summary(rep):
    comps = {c["component"]: c for c in rep["components"]}
    sc = {s["syscall"]: s["count"] for s in rep["syscalls"]}
    def comp(name):
        c = comps.get(name)
        return None if not c else {"calls": c["calls"], "mean_ns": c["mean_ns"], "p99_ns": c["p99_ns"],
                                   "share": c["share_of_alloc_time"], "nonzero": c["arg_nonzero"]}
    names = ["malloc", "free", "realloc", "small_fast", "small_refill", "large_alloc", "bigcache_lookup",
             "bigcache_put", "elo_select", "header", "os_map", "os_unmap", "os_purge", "remote_free"]
    return {"components": {n: comp(n) for n in names if comp(n)}, "syscalls": sc,
            "probe_hits": rep["probe"]["hits"], "hit_cost_ns": rep["probe"]["hit_cost_ns"]}

# ---------------------------------------------------------------- main

def main():
    def interrupted(*_):
        raise KeyboardInterrupt
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupted)
    samples = {}  # (workload, alloc) -> list of (metrics, peak, final)
    providers = {}
    for wname, _, probe_argv in WORKLOADS:
        for a in ALLOCATORS:
            providers[(wname, a[0])] = malloc_provider(a, probe_argv)
    # One uncounted run of each workload first: page cache, binaries, CPU frequency.
    for wname, fn, _ in WORKLOADS:
        log("warm-up: %s" % wname)
        fn(ALLOCATORS[-1])
    total = runs * len(WORKLOADS) * len(ALLOCATORS)
    done = 0
    t0 = time.monotonic()
    for r in range(runs):
        for wname, fn, _ in WORKLOADS:
            # Rotated each round, so no allocator always runs right after another.
            for a in ALLOCATORS[r % len(ALLOCATORS):] + ALLOCATORS[:r % len(ALLOCATORS)]:
                done += 1
                log("[%d/%d, %.0f s] %s with %s (run %d/%d)" % (done, total, time.monotonic() - t0, wname, a[0], r + 1, runs))
                samples.setdefault((wname, a[0]), []).append(fn(a))
    traces = {}
    if trace:
        if os.geteuid() != 0:
            log("not root: probe-cli traces skipped")
        else:
            for a in [a for a in ALLOCATORS if a[0].startswith("hakmem")]:
                for wname, _, _ in WORKLOADS:
                    log("tracing %s with %s (probe-cli run)" % (wname, a[0]))
                    rep = trace(a, wname)
                    with open(os.path.join(out, "trace-%s-%s.json" % (wname, a[0])), "w") as f:
                        json.dump(rep, f, indent=1)
                    traces[(wname, a[0])] = trace_summary(rep)
    write_report(samples, providers, traces, time.monotonic() - t0)

def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None

def fold(samples):
    """(workload, alloc) -> {metric: {throughput, p99_ms, unit}}, peak, final (medians)."""
    res = {}
    for key, runs_ in samples.items():
        metrics = {}
        for m in runs_[0][0]:
            metrics[m] = {"throughput": med([r[0][m]["throughput"] for r in runs_]),
                          "p99_ms": med([r[0][m]["p99_ms"] for r in runs_]),
                          "unit": runs_[0][0][m]["unit"],
                          "samples": [r[0][m]["throughput"] for r in runs_]}
        res[key] = (metrics, med([r[1] for r in runs_]), med([r[2] for r in runs_]))
    return res

def mib(k):
    return "-" if k is None else "%.1f MiB" % (k / 1024)

def fmt_tp(v, unit):
    if v is None:
        return "-"
    return ("%.0f %s" if v >= 100 else "%.2f %s") % (v, unit)

def write_report(samples, providers, traces, seconds):
    folded = fold(samples)
    allocs = [a[0] for a in ALLOCATORS]
    label = {a[0]: a[3] for a in ALLOCATORS}
    metrics_order = []
    for wname, _, _ in WORKLOADS:
        for a in allocs:
            for m in folded.get((wname, a), ({},))[0]:
                if (wname, m) not in metrics_order:
                    metrics_order.append((wname, m))
    cmd = "scripts/production-compare.sh" + (" --quick" if quick else "") + ("" if runs == (1 if quick else 2) else " --runs %d" % runs)
    md = io.StringIO()
    w = md.write
    w("# Production-like runs: hakmem (per-thread and global BigCache) vs mimalloc, jemalloc, tcmalloc, glibc\n\n")
    w("`%s` on %s (%d CPUs, kernel %s), %s; median of %d run(s) per cell; %.0f s in all%s.\n\n" % (
        cmd, platform.node(), os.cpu_count(), platform.release(), time.strftime("%Y-%m-%d %H:%M"), runs, seconds,
        " — **--quick: small inputs, numbers not meaningful**" if quick else ""))
    w("Throughput: higher is better; p99 from redis-benchmark; RSS of the program (redis: the server). "
      "Final RSS: redis after the benchmark (data still held), xz at its last 10 ms sample, python after it freed "
      "its data (its own VmRSS).\n\n")
    for wname, _, _ in WORKLOADS:
        w("## %s\n\n" % wname)
        ms = [m for (wn, m) in metrics_order if wn == wname]
        w("| allocator | malloc from | " + " | ".join("%s" % m for m in ms) + " | peak RSS | final RSS |\n")
        w("|---|---|" + "---:|" * len(ms) + "---:|---:|\n")
        for a in allocs:
            if (wname, a) not in folded:
                continue
            metrics, peak, final = folded[(wname, a)]
            cells = []
            for m in ms:
                x = metrics.get(m)
                if not x:
                    cells.append("-")
                    continue
                c = fmt_tp(x["throughput"], x["unit"])
                if x["p99_ms"] is not None:
                    c += " (p99 %.2f ms)" % x["p99_ms"]
                cells.append(c)
            w("| %s | %s | %s | %s | %s |\n" % (label[a], providers.get((wname, a), "?"), " | ".join(cells), mib(peak), mib(final)))
        w("\n")
    if "hakmem" in allocs and "hakmem-global" in allocs:
        w("## Per-thread vs global BigCache (hakmem)\n\n")
        w("| workload | metric | per-thread | global | global vs per-thread | run-to-run spread |\n|---|---|---:|---:|---:|---:|\n")
        for wname, m in metrics_order:
            t, g = folded.get((wname, "hakmem")), folded.get((wname, "hakmem-global"))
            if not t or not g or m not in t[0] or m not in g[0]:
                continue
            a, b = t[0][m], g[0][m]
            rel = 100 * (b["throughput"] / a["throughput"] - 1) if a["throughput"] else 0.0
            # The larger relative range (max - min over median) of the two, in %.
            spread = max(100 * (max(x["samples"]) - min(x["samples"])) / x["throughput"] if x["throughput"] else 0 for x in (a, b))
            verdict = "" if len(a["samples"]) < 2 else (" (noise)" if abs(rel) <= spread else "")
            w("| %s | %s (%s) | %s | %s | %+.1f%%%s | ±%.0f%% |\n" % (wname, m, a["unit"], fmt_tp(a["throughput"], ""), fmt_tp(b["throughput"], ""), rel, verdict, spread / 2))
            if a["p99_ms"] is not None:
                w("| %s | %s p99 (ms) | %.3f | %.3f | %+.1f%% | |\n" % (wname, m, a["p99_ms"], b["p99_ms"], 100 * (b["p99_ms"] / a["p99_ms"] - 1) if a["p99_ms"] else 0))
        for wname, _, _ in WORKLOADS:
            t, g = folded.get((wname, "hakmem")), folded.get((wname, "hakmem-global"))
            if t and g:
                w("| %s | peak RSS | %s | %s | %+.1f%% | |\n" % (wname, mib(t[1]), mib(g[1]), 100 * (g[1] / t[1] - 1) if t[1] else 0))
                w("| %s | final RSS | %s | %s | %+.1f%% | |\n" % (wname, mib(t[2]), mib(g[2]), 100 * (g[2] / t[2] - 1) if t[2] else 0))
        w("\n(noise): the difference is within the larger max-min range of the two allocators' runs "
          "(the spread column is half of it). Redis executes commands on one thread, so the "
          "two BigCache modes see the same single-threaded pattern there.\n\n")
    if traces:
        w("## probe-cli traces of the hakmem runs\n\n")
        w("Each workload once more under `probe-cli run` (a probe hit costs about %s ns; traced runs are slower and are not in the tables above). "
          "calls / mean per call; BigCache lookup: hit rate.\n\n" % ("%.0f" % med([t["hit_cost_ns"] for t in traces.values()])))
        cols = ["malloc", "free", "small_fast", "small_refill", "large_alloc", "bigcache_lookup", "bigcache_put", "elo_select", "os_map", "os_unmap", "os_purge"]
        w("| workload | hakmem | " + " | ".join(cols) + " | mmap/munmap/madvise |\n|---|---|" + "---:|" * (len(cols) + 1) + "\n")
        for (wname, a), t in sorted(traces.items()):
            cells = []
            for c in cols:
                x = t["components"].get(c)
                if not x:
                    cells.append("-")
                elif c == "bigcache_lookup":
                    cells.append("%d / %.0f ns, hit %.0f%%" % (x["calls"], x["mean_ns"], 100 * x["nonzero"] / max(1, x["calls"])))
                else:
                    cells.append("%d / %.0f ns" % (x["calls"], x["mean_ns"]))
            sc = t["syscalls"]
            w("| %s | %s | %s | %d/%d/%d |\n" % (wname, "global" if a == "hakmem-global" else "per-thread", " | ".join(cells),
                                                 sc.get("mmap", 0), sc.get("munmap", 0), sc.get("madvise", 0)))
        w("\nFull reports: `trace-WORKLOAD-ALLOCATOR.json` next to this file.\n")
    with open(os.path.join(out, "production.md"), "w") as f:
        f.write(md.getvalue())
    with open(os.path.join(out, "production.json"), "w") as f:
        json.dump({"command": cmd, "quick": quick, "runs": runs, "sizes": SIZES,
                   "results": [{"workload": k[0], "allocator": k[1], "malloc_from": providers.get(k),
                                "metrics": v[0], "peak_rss_kib": v[1], "final_rss_kib": v[2]} for k, v in folded.items()],
                   "traces": [{"workload": k[0], "allocator": k[1], **v} for k, v in traces.items()]}, f, indent=1)
    write_svg(folded, metrics_order, allocs, label, os.path.join(out, "production.svg"))
    print(md.getvalue())
    log("wrote production.md, production.svg, production.json%s to %s" % (", trace-*.json" if traces else "", out))

COLOURS = {"hakmem": "#d62728", "hakmem-global": "#8c564b", "mimalloc": "#1f77b4", "jemalloc": "#2ca02c",
           "tcmalloc": "#9467bd", "glibc": "#7f7f7f"}

def write_svg(folded, metrics_order, allocs, label, path):
    """Two panels of grouped bars relative to glibc (or the first allocator): throughput, peak RSS."""
    base = "glibc" if "glibc" in allocs else allocs[0]
    groups_tp = [(m, {a: folded[(w, a)][0][m]["throughput"] for a in allocs if (w, a) in folded and m in folded[(w, a)][0]})
                 for w, m in metrics_order]
    groups_rss = [("%s: peak RSS" % w, {a: folded[(w, a)][1] for a in allocs if (w, a) in folded})
                  for w in dict.fromkeys(w for w, _ in metrics_order)]
    width, bar, gap, left = 0, 14, 26, 70
    n_tp, n_rss = len(groups_tp), len(groups_rss)
    per_group = bar * len(allocs) + gap
    width = max(left + per_group * max(n_tp, n_rss) + 40, left + 235 * len(allocs))
    panel_h, top = 260, 60
    height = top + 2 * (panel_h + 110) + 40
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">' % (width, height),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="24" font-size="16">Production-like runs: relative to %s (1.0 = %s)</text>' % (left, label[base], label[base])]
    for i, a in enumerate(allocs):
        x = left + i * 235
        o.append('<rect x="%d" y="36" width="12" height="12" fill="%s"/><text x="%d" y="46">%s</text>' % (x, COLOURS.get(a, "#333"), x + 16, label[a]))
    def panel(groups, y0, title, higher_better):
        ratios = [v / g[base] for _, g in groups for v in g.values() if g.get(base)]
        ymax = max([1.2] + [min(r, 3.0) * 1.1 for r in ratios])
        o.append('<text x="%d" y="%d" font-size="13">%s (%s is better; bars cut at 3x)</text>' % (left, y0 - 8, title, "higher" if higher_better else "lower"))
        for t in (0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0):
            if t > ymax:
                break
            y = y0 + panel_h - t / ymax * panel_h
            o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/><text x="%d" y="%.1f" text-anchor="end">%.1f</text>' % (
                left, width - 20, y, y, "#000" if t == 1.0 else "#ddd", left - 6, y + 4, t))
        for gi, (name, g) in enumerate(groups):
            x0 = left + gi * per_group + gap / 2
            for ai, a in enumerate(allocs):
                if a not in g or not g.get(base):
                    continue
                r = g[a] / g[base]
                h = min(r, 3.0) / ymax * panel_h
                x = x0 + ai * bar
                o.append('<rect x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s %s: %.3g (%.2fx)</title></rect>' % (
                    x, y0 + panel_h - h, bar - 2, h, COLOURS.get(a, "#333"), label[a], name, g[a], r))
            cx = x0 + bar * len(allocs) / 2
            o.append('<text transform="translate(%.1f,%d) rotate(30)" font-size="10">%s</text>' % (cx - 20, y0 + panel_h + 14, name))
    panel(groups_tp, top + 30, "Throughput", True)
    panel(groups_rss, top + 30 + panel_h + 110, "Peak RSS", False)
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o))

try:
    main()
except KeyboardInterrupt:
    for p in list(live):
        p.kill()
    sys.exit("production-compare.sh: interrupted")
except Exception:
    for p in list(live):
        p.kill()
    raise
PY

# The driver's servers and programs get SIGTERM when it dies (PR_SET_PDEATHSIG);
# the driver gets it when this script is interrupted.
driver=
cleanup() {
  if [ -n "$driver" ]; then kill "$driver" 2>/dev/null || true; wait "$driver" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
/usr/bin/python3 "$work/compare.py" "$quick" "$runs" "$out" "$allocators" "$trace" "$target_dir" "$work" &
driver=$!
status=0
wait "$driver" || status=$?
driver=
exit "$status"
