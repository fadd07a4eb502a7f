"""Fork latency with forkaudit installed, against a bare fork measured in the same run.

    python bench/fork_latency.py [--mb 400] [--threads 8] [--rounds 30] [--quick]

Run it from outside the source tree, against an installed forkaudit. It prints
figures and ratios; it asserts nothing about time (this is not a test), and
the PASS/MISS next to each target is information only.

Builds a process with about --mb MB resident (1/4 in small Python objects,
the rest in bytearrays of random bytes, all written so they are resident) and
--threads threads: half (or --busy) busy in a pure Python loop, the rest idle
in Event.wait. Then prints:

1. Fork latency. --rounds forks per configuration, round robin (the order
   rotates each round) between bare (forkaudit not installed) and installed
   with policy "record" and scan full, libs and off. Two figures per fork, both
   from a time.monotonic_ns() taken just before os.fork():
     (a) parent  until os.fork() returns in the parent;
     (b) child   until the child runs its first line (it takes
                 time.monotonic_ns(), a system-wide CLOCK_MONOTONIC, as its first
                 action and writes it to a pipe).
   Median and p90 of each, their ratio to bare's, and the target on (a).
2. Where that time goes, from pthread_atfork handlers of the benchmark's own
   registered around forkaudit's (a tiny C file built with cc at start; skipped
   without a compiler): the Python before-fork hooks, forkaudit's C prepare
   handler, the fork itself, the after-fork part in the parent (including
   waiting for the GIL back from busy threads), and in the child forkaudit's C
   scan and its Python-level audit. The same target on the part of (a) that
   runs before any Python after-fork code, where the GIL cannot change hands.
3. The C scan's throughput, in forked children (single-threaded, so safe):
   native.scan_now("full", thread TIDs) against native.memchr_pass("full"),
   memchr for a byte absent from the data over the same mappings (the physical
   limit); cold (the first pass over memory in a fresh child: what a fork's
   scan pays) and warm (later passes in the same child); two sets of fake TIDs
   that are hard on the scan's prefilter; and the child-side scan seconds the
   audited forks recorded in their JSON records ("scan" field).
4. forkaudit.flow.take_snapshot (the Python before-fork hook's work) timed on
   its own, right after a fork and with no fork in between.
"""
import argparse
import ctypes
import gc
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import forkaudit
from forkaudit import flow, native
from benchutil import in_child, read_all  # run as a script: bench/ is on sys.path

TARGET_PARENT = 1.25  # parent-side fork latency at most this times bare
TARGET_SCAN = 0.5     # scan throughput at least this times memchr
CONFIGS = ("bare", "full", "libs", "off")
ABSENT = 0xA7         # the byte fa_memchr_pass (csrc/scan.c) looks for: kept out of the bytearrays
SCAN_REPS = 3         # warm passes of each kind per scan child

# 3.12+ warns at each fork of a process with threads; the warning is the same for every
# configuration, and printing it 120 times would bury the figures.
warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")


# Timestamps inside the fork, from pthread_atfork handlers: A is registered before
# forkaudit's handlers and B after. glibc runs prepare handlers in reverse order of
# registration and parent/child handlers in order, so forkaudit's C prepare handler runs
# between B_prep and A_prep, its child handler (the scan) between A_child and B_child.
# These are C handlers: no Python code runs there, so the GIL cannot change hands.
STAMPS_C = r"""
#include <stdint.h>
#include <pthread.h>
#include <time.h>
static volatile int64_t st[6]; /* B_prep, A_prep, A_parent, B_parent, A_child, B_child */
static int64_t ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}
static void b_prep(void) { st[0] = ns(); }
static void a_prep(void) { st[1] = ns(); }
static void a_parent(void) { st[2] = ns(); }
static void b_parent(void) { st[3] = ns(); }
static void a_child(void) { st[4] = ns(); }
static void b_child(void) { st[5] = ns(); }
int stamps_register_a(void) { return pthread_atfork(a_prep, a_parent, a_child); }
int stamps_register_b(void) { return pthread_atfork(b_prep, b_parent, b_child); }
void stamps_read(int64_t *out) { int i; for (i = 0; i < 6; i++) out[i] = st[i]; }
"""
STAMP_NAMES = ("b_prep", "a_prep", "a_parent", "b_parent", "a_child", "b_child")


class Stamps:
    """The pthread_atfork timestamps (None if no C compiler: the breakdown is skipped)."""

    def __init__(self, tmp):
        self.lib, self.why = None, ""
        src, so = os.path.join(tmp, "stamps.c"), os.path.join(tmp, "stamps.so")
        with open(src, "w") as f:
            f.write(STAMPS_C)
        cc = os.environ.get("CC", "cc")
        try:
            subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", so, src], check=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self.lib = ctypes.CDLL(so)
        except (OSError, subprocess.CalledProcessError) as e:
            self.why = "could not build the timestamp helper with %s: %s" % (cc, e)
            return
        self.lib.stamps_read.argtypes = [ctypes.POINTER(ctypes.c_int64)]
        self.buf = (ctypes.c_int64 * 6)()

    def register_a(self):  # before forkaudit registers its handlers (its first install)
        if self.lib is not None:
            self.lib.stamps_register_a()

    def register_b(self):  # after
        if self.lib is not None:
            self.lib.stamps_register_b()

    def read(self):
        if self.lib is None:
            return None
        self.lib.stamps_read(self.buf)
        return dict(zip(STAMP_NAMES, self.buf))


class Item:
    """A small Python object, like an application's records."""

    __slots__ = ("n", "name", "pair", "attrs")

    def __init__(self, n):
        self.n = n
        self.name = "item-%d" % n
        self.pair = (n, n * 0.5)
        self.attrs = {"n": n, "tag": self.name[-3:]}


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def random_block(size):
    """size random bytes without ABSENT, so memchr for it really scans everything."""
    table = bytes(b if b != ABSENT else ABSENT - 1 for b in range(256))
    return os.urandom(size).translate(table)


def build_heap(mb):
    """About mb MB resident: a quarter in small Python objects, the rest in bytearrays."""
    keep, items = [], []
    start = rss_mb()
    while rss_mb() - start < mb / 4:
        first = len(items)
        items.extend(Item(n) for n in range(first, first + 20000))
    blocks = [random_block(1 << 20) for _ in range(16)]
    while rss_mb() < mb:
        for _ in range(16):
            keep.append(bytearray(blocks[len(keep) % len(blocks)]))  # a private copy: resident
    gc.freeze()  # no collection of this heap inside a timed fork (as fork-heavy servers do)
    return keep, items


class Threads:
    def __init__(self, n, busy):
        self.stop = threading.Event()
        self.tids = []
        self.spins = [0] * n  # busy threads count their loops: did one run while we held the GIL?
        kinds = ["busy"] * busy + ["idle"] * (n - busy)
        self.threads = [threading.Thread(target=getattr(self, kind), args=(i,),
                                         name="bench-%s-%d" % (kind, i), daemon=True)
                        for i, kind in enumerate(kinds)]
        for t in self.threads:
            t.start()
        while len(self.tids) < n:
            time.sleep(0.01)
        self.tids.sort()

    def idle(self, i):
        self.tids.append(threading.get_native_id())
        self.stop.wait()

    def busy(self, i):
        self.tids.append(threading.get_native_id())
        spins, x = self.spins, 0
        while not self.stop.is_set():
            x = (x * 31 + 7) % 1000003
            spins[i] += 1

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def one_fork(stamps):
    """The monotonic ns of one fork: t0 just before os.fork(), t1 when it returned in the
    parent, first when the child ran its first line, and the pthread_atfork stamps."""
    r, w = os.pipe()
    t0 = time.monotonic_ns()
    pid = os.fork()
    if pid == 0:
        first = time.monotonic_ns()
        mine = stamps.read() or {}
        os.write(w, b"%d %d %d" % (first, mine.get("a_child", 0), mine.get("b_child", 0)))
        os._exit(0)
    t1 = time.monotonic_ns()
    os.close(w)
    data = read_all(r)
    os.waitpid(pid, 0)
    out = {"t0": t0, "t1": t1}
    out.update(stamps.read() or {})
    fields = data.split()
    if len(fields) == 3:
        out["first"], out["a_child"], out["b_child"] = (int(x) for x in fields)
    return out


def configure(config, json_path):
    if config == "bare":
        forkaudit.uninstall()
    else:
        forkaudit.install(policy="record", json_path=json_path, scan=config)


def fork_rounds(rounds, json_path, warmup_path, stamps):
    samples = {c: [] for c in CONFIGS}
    stamps.register_a()
    configure("full", warmup_path)  # forkaudit registers its pthread_atfork handlers here
    stamps.register_b()
    for c in CONFIGS:  # one unrecorded round: the first audited fork reads and parses sources
        configure(c, warmup_path)
        one_fork(stamps)
    for i in range(rounds):
        k = i % len(CONFIGS)
        for c in CONFIGS[k:] + CONFIGS[:k]:  # rotate, so no configuration always follows another
            configure(c, json_path)
            samples[c].append(one_fork(stamps))
    forkaudit.uninstall()
    return samples


def span_ms(forks, start, end):
    """[ms from stamp start to stamp end] over forks that have both."""
    return [(f[end] - f[start]) / 1e6 for f in forks if f.get(start) and f.get(end)]


def p90(values):
    values = sorted(v for v in values if v == v)
    return values[max(0, math.ceil(0.9 * len(values)) - 1)] if values else float("nan")


def median(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def scan_pass(tids):
    _, s = native.scan_now("full", tids)
    return s["bytes"], s["seconds"]


def memchr_pass():
    seconds, nbytes = native.memchr_pass("full")
    return nbytes, seconds


def scan_child(tids, scan_first):
    """In one child: a cold first pass (scan or memchr), then SCAN_REPS warm passes of each."""
    def run():
        first = scan_pass(tids) if scan_first else memchr_pass()
        warm = {"scan": [], "memchr": []}
        for _ in range(SCAN_REPS):
            for kind in (("memchr", "scan") if scan_first else ("scan", "memchr")):
                warm[kind].append(scan_pass(tids) if kind == "scan" else memchr_pass())
        return first, warm
    return in_child(run)


def clean_memchr_child(blobs):
    """memchr (bytearray.find of one byte) over the benchmark's own bytearrays, which hold no
    ABSENT byte: cold (first pass in a fresh child), then warm. The same memchr as
    memchr_pass, on data known to lack the byte: a check on that figure."""
    needle = bytes([ABSENT])

    def one_pass():
        t0 = time.perf_counter()
        for blob in blobs:
            blob.find(needle)
        return sum(len(b) for b in blobs), time.perf_counter() - t0

    def run():
        first = one_pass()
        return first, [one_pass() for _ in range(SCAN_REPS)]
    return in_child(run)


def fake_tid_child(tid_sets):
    """Warm scans with fake TIDs against warm memchr, in one child."""
    def run():
        memchr_pass()  # make the memory warm
        out = {}
        for name, tids in tid_sets.items():
            scans, memchrs = [], []
            for _ in range(SCAN_REPS):
                scans.append(scan_pass(tids))
                memchrs.append(memchr_pass())
            out[name] = (scans, memchrs)
        return out
    return in_child(run)


def gbps(passes):
    """Median GB/s of (bytes, seconds) passes."""
    return median([b / s / 1e9 for b, s in passes if s > 0])


def snapshot_cost(rounds, threads):
    """take_snapshot timed on its own: right after a bare fork (which write-protected every
    page of this process: the first write to each is a fault) and again with no fork in
    between. Returns {case: (ms list, minor faults list)} and how often a busy thread ran
    during the call (the GIL changed hands inside the Python hook)."""
    forkaudit.install(policy="record", json_path=None, scan="full")
    settings = forkaudit.installed()
    forkaudit.uninstall()  # forks are not audited again; take_snapshot needs only the settings
    flow.take_snapshot(settings)
    out = {"after a fork": ([], []), "no fork between": ([], [])}
    switched = 0
    for _ in range(rounds):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        for case in out:
            spins = sum(threads.spins)
            faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            t0 = time.monotonic_ns()
            flow.take_snapshot(settings)
            t1 = time.monotonic_ns()
            out[case][1].append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - faults)
            out[case][0].append((t1 - t0) / 1e6)
            switched += sum(threads.spins) != spins
    return out, switched


def json_scans(path):
    by_mode = {}
    if not os.path.exists(path):  # no audited fork wrote a record
        return by_mode
    with open(path) as f:
        for line in f:
            scan = json.loads(line).get("scan")
            if scan:
                by_mode.setdefault(scan["mode"], []).append(scan)
    return by_mode


def verdict(ok):
    return "PASS" if ok else "MISS"


def label(config):
    return "bare" if config == "bare" else "scan " + config


def print_latency(samples):
    """Section 1: the two figures the brief asks for, and the parent-side target."""
    parent = {c: span_ms(f, "t0", "t1") for c, f in samples.items()}
    child = {c: span_ms(f, "t0", "first") for c, f in samples.items()}
    bp, bc = parent["bare"], child["bare"]
    print("\n1. fork latency, ms: median / p90, each with its ratio to bare's median / p90")
    print("%-10s %-36s %-36s" % ("", "(a) parent: os.fork() returns", "(b) child: its first line runs"))
    for c in CONFIGS:
        mp, pp, mc, pc = median(parent[c]), p90(parent[c]), median(child[c]), p90(child[c])
        print("%-10s %7.2f / %7.2f  (%4.2fx / %4.2fx)   %7.2f / %7.2f  (%5.2fx / %5.2fx)" % (
            label(c), mp, pp, mp / median(bp), pp / p90(bp), mc, pc, mc / median(bc), pc / p90(bc)))
    for c in CONFIGS[1:]:
        ratio = median(parent[c]) / median(bp)
        print("target: (a) parent-side median, %-9s <= %.2fx bare: %.3fx  %s"
              % (label(c), TARGET_PARENT, ratio, verdict(ratio <= TARGET_PARENT)))


def print_breakdown(samples, stamps):
    """Section 2: where each fork's time goes, from the pthread_atfork stamps."""
    print("\n2. where the time goes, median ms per fork (pthread_atfork stamps; forkaudit's C "
          "handlers run inside the brackets)")
    if stamps.lib is None:
        print("skipped: %s" % stamps.why)
        return
    parent = [("py before", "t0", "b_prep"),       # os.fork wrapper + Python before-fork hooks (snapshot)
              ("C prepare", "b_prep", "a_prep"),   # forkaudit's prepare handler (/proc/self/task)
              ("fork", "a_prep", "b_parent"),      # glibc's fork and the system call (page tables)
              ("py after+GIL", "b_parent", "t1")]  # after-in-parent hooks; the GIL back from busy threads
    child = [("child starts", "a_prep", "a_child"),
             ("C scan", "a_child", "b_child"),     # forkaudit's child handler
             ("py in child", "b_child", "first")]  # CPython's and forkaudit's after-fork work in the child
    print("%-10s" % "" + "".join("%13s" % name for name, _, _ in parent) + "  |"
          + "".join("%13s" % name for name, _, _ in child))
    for c in CONFIGS:
        cells = ["".join("%13.2f" % median(span_ms(samples[c], a, b)) for _, a, b in part)
                 for part in (parent, child)]
        print("%-10s%s  |%s" % (label(c), cells[0], cells[1]))
    held = {c: span_ms(samples[c], "t0", "b_parent") for c in CONFIGS}
    bare = held["bare"]
    print("(a) up to the end of forkaudit's C parent handler, before any after-fork Python code (so "
          "without the\n    GIL hand-back that follows a fork longer than the switch interval):")
    for c in CONFIGS:
        m, p = median(held[c]), p90(held[c])
        print("  %-10s median %7.2f (%4.2fx)  p90 %7.2f (%4.2fx)"
              % (label(c), m, m / median(bare), p, p / p90(bare)))
    for c in CONFIGS[1:]:
        ratio = median(held[c]) / median(bare)
        print("target: (a) without the GIL hand-back, %-9s <= %.2fx bare: %.3fx  %s"
              % (label(c), TARGET_PARENT, ratio, verdict(ratio <= TARGET_PARENT)))


def print_scan(threads, items, blobs, pid_max, json_path):
    """Section 3: the scan's throughput against memchr, and what the audited forks recorded."""
    cold_m, warm_m1 = scan_child(threads.tids, scan_first=False)
    cold_s, warm_s2 = scan_child(threads.tids, scan_first=True)
    cs, cm = gbps([cold_s]), gbps([cold_m])
    ws, wm = gbps(warm_m1["scan"] + warm_s2["scan"]), gbps(warm_m1["memchr"] + warm_s2["memchr"])
    print("\n3. scan throughput: scan_now(\"full\", the %d thread TIDs) vs memchr for an absent byte "
          "over the same mappings" % len(threads.tids))
    print("bytes read: scan %.0f MB, memchr %.0f MB" % (cold_s[0] / 1e6, cold_m[0] / 1e6))
    print("cold (first pass in a fresh child) : scan %5.1f GB/s  memchr %5.1f GB/s  scan/memchr %.2fx"
          % (cs, cm, cs / cm))
    print("warm (median of %d passes of each) : scan %5.1f GB/s  memchr %5.1f GB/s  scan/memchr %.2fx"
          % (2 * SCAN_REPS, ws, wm, ws / wm))
    print("target: scan >= %.2fx memchr, warm vs warm (same child): %.3fx  %s"
          % (TARGET_SCAN, ws / wm, verdict(ws / wm >= TARGET_SCAN)))
    print("target: scan >= %.2fx memchr, cold vs cold (what a fork pays): %.3fx  %s"
          % (TARGET_SCAN, cs / cm, verdict(cs / cm >= TARGET_SCAN)))
    clean_cold, clean_warm = clean_memchr_child(blobs)
    ccold, cwarm = gbps([clean_cold]), gbps(clean_warm)
    if not (ccold > 0 and cwarm > 0):   # (nan: no pass long enough to time)
        # a small --mb: there are no bytearrays, or they are read faster than the clock can time
        print("check: memchr over this benchmark's bytearrays only (%.0f MB): too little to time"
              % (clean_cold[0] / 1e6))
    else:
        print_clean_check(clean_cold, ccold, cwarm, ws, wm)
    print_hard_tids(threads, items, pid_max, json_path)


def print_clean_check(clean_cold, ccold, cwarm, ws, wm):
    print("check: memchr over this benchmark's bytearrays only (%.0f MB, no 0x%02x in them): cold %.1f GB/s, "
          "warm %.1f GB/s; memchr_pass warm is %.2fx that"
          % (clean_cold[0] / 1e6, ABSENT, ccold, cwarm, wm / cwarm))
    if wm < 0.8 * cwarm:
        print("note: either the byte 0x%02x is not absent from this heap (Python objects can hold it, in "
              "pointers, depending on ASLR, or in numbers), so memchr_pass stopped often, or the machine "
              "was busy, or the bytearrays are small enough to gain from the cache (small --mb). Against "
              "the clean figure the scan runs at %.2fx warm" % (ABSENT, ws / cwarm))


def print_hard_tids(threads, items, pid_max, json_path):
    high = id(items[len(items) // 2]) >> 32
    fake = {"TIDs 300-307 (after the pid counter wraps)": list(range(300, 308)),
            "TIDs %d-%d (high half of this heap's pointers)" % (high - 3, high + 4):
                list(range(high - 3, high + 5))}
    print("fake TIDs, warm (the prefilter's hard cases%s):" % (
        "" if high < pid_max else "; a pointer high half of %d is >= pid_max, no real TID" % high))
    for name, (scans, memchrs) in fake_tid_child(fake).items():
        s, m = gbps(scans), gbps(memchrs)
        print("  %-46s scan %5.1f GB/s  memchr %5.1f GB/s  scan/memchr %.2fx" % (name, s, m, s / m))

    recorded = json_scans(json_path)
    print("child-side scan recorded in the audited forks' JSON (\"scan\" field), median:")
    for mode in ("full", "libs", "off"):
        recs = recorded.get(mode, [])
        if not recs:
            print("  scan %-4s no \"scan\" record (none is made when the scan is off)" % mode)
            continue
        secs, nbytes = median([r["seconds"] for r in recs]), median([r["bytes"] for r in recs])
        print("  scan %-4s %7.2f ms over %4.0f MB, %5.1f GB/s  (%d forks, %d mappings)" % (
            mode, secs * 1e3, nbytes / 1e6, nbytes / secs / 1e9 if secs > 0 else 0.0, len(recs),
            median([r["mappings"] for r in recs])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=400, help="resident size to build (MB)")
    ap.add_argument("--threads", type=int, default=8, help="threads besides the main one")
    ap.add_argument("--busy", type=int, default=None, help="how many of them are busy (default: half)")
    ap.add_argument("--rounds", type=int, default=30, help="forks per configuration")
    ap.add_argument("--quick", action="store_true", help="smoke run: 100 MB, 10 rounds")
    args = ap.parse_args()
    if args.quick:
        args.mb, args.rounds = 100, 10
    if args.threads < 1 or args.rounds < 1 or args.mb < 1:
        ap.error("--threads, --rounds and --mb must be at least 1")
    busy = (args.threads + 1) // 2 if args.busy is None else min(args.busy, args.threads)
    if not native.available:
        sys.exit("forkaudit's C-level detection is off here (%s): nothing to measure" % native.reason)
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="forkaudit-bench-")
    json_path = os.path.join(tmp, "forks.jsonl")
    stamps = Stamps(tmp)  # compiled before the threads start
    if forkaudit.installed() is not None:  # FORKAUDIT set: the .pth hook installed it at start
        forkaudit.uninstall()
        stamps.lib, stamps.why = None, ("forkaudit was installed at start (FORKAUDIT is set), so its "
                                        "pthread_atfork handlers are not inside the benchmark's brackets")
    keep, items = build_heap(args.mb)
    threads = Threads(args.threads, busy)
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read())
        print("forkaudit fork latency: python %s, %.0f MB resident, %d threads (%d busy), %d rounds per "
              "configuration" % (sys.version.split()[0], rss_mb(), args.threads, busy, args.rounds))
        print("thread TIDs %d-%d (pid_max %d); switch interval %.1f ms"
              % (threads.tids[0], threads.tids[-1], pid_max, sys.getswitchinterval() * 1e3))

        samples = fork_rounds(args.rounds, json_path, os.path.join(tmp, "warmup.jsonl"), stamps)
        print_latency(samples)
        print_breakdown(samples, stamps)
        print_scan(threads, items, keep, pid_max, json_path)

        cost, switched = snapshot_cost(args.rounds, threads)
        print("\n4. forkaudit.flow.take_snapshot (the Python before-fork hook's work) on its own, "
              "median / p90:")
        for case, (times, faults) in cost.items():
            print("  %-16s %6.3f / %6.3f ms, %4d page faults (median)"
                  % (case, median(times), p90(times), median(faults)))
        print("  a busy thread ran during the call (the GIL changed hands inside the hook) in %d of %d calls"
              % (switched, 2 * args.rounds))
        print("\nran in %.0f s" % (time.monotonic() - started))
    finally:
        forkaudit.uninstall()
        threads.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
