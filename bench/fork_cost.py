"""What forkaudit costs a fork, against a bare fork measured in the same run.

    python bench/fork_cost.py [--mb 400] [--threads 8] [--rounds 30] [--quick]

Builds a process with about --mb MB resident and --threads threads (half idle
in Event.wait, half busy in pure Python), then forks it over and over, round
robin between: bare (forkaudit not installed) and audited with scan full,
libs and off (policy record, JSON to a temporary file). For each it prints
the median and p90 of:

  parent  time for os.fork() to return in the parent
  child   time until the child runs its first line of Python (the audit,
          scan included, runs before that line)

and the ratio to bare. Then the C scan's throughput over this process's
memory, against memchr for an absent byte over the same mappings (the
physical limit; both skip the pages the scan skips: never written, unmodified
file pages, the zero page), each measured in a fresh child (cold: the first pass after a
fork pays the page-table cost for both) and again warm. Ratios only: this is
not a test and asserts nothing about time.
"""
import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import forkaudit
from benchutil import in_child
from forkaudit import native

TARGET_PARENT = 1.25
TARGET_SCAN = 0.5


def build_process(mb, nthreads):
    keep = []
    blob_mb = mb * 3 // 4
    for _ in range(blob_mb):
        # resident (written), and without 0xa7: the byte memchr_pass looks for must be absent
        keep.append(bytearray(os.urandom(1 << 20).replace(b"\xa7", b"\x00")))
    objs = []
    per = 1 << 20
    while len(objs) * 120 < (mb - blob_mb) * per:          # roughly 120 bytes per small dict entry
        objs.append({"n": len(objs), "s": "x%d" % len(objs)})
    keep.append(objs)
    stop = threading.Event()
    tids = []

    def idle():
        tids.append(threading.get_native_id())
        stop.wait()

    def busy():
        tids.append(threading.get_native_id())
        x = 0
        while not stop.is_set():
            x = (x * 31 + 7) % 1000003

    threads = [threading.Thread(target=idle if i % 2 else busy, daemon=True) for i in range(nthreads)]
    for t in threads:
        t.start()
    while len(tids) < nthreads:
        time.sleep(0.01)
    return keep, stop, tids


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def one_fork():
    r, w = os.pipe()
    t0 = time.monotonic_ns()
    pid = os.fork()
    if pid == 0:
        os.write(w, str(time.monotonic_ns()).encode())
        os._exit(0)
    t1 = time.monotonic_ns()
    os.close(w)
    child = int(os.read(r, 64) or 0)
    os.close(r)
    os.waitpid(pid, 0)
    return (t1 - t0) / 1e6, (child - t0) / 1e6


def fork_rounds(rounds, report):
    configs = ["bare", "full", "libs", "off"]
    samples = {c: ([], []) for c in configs}
    for _ in range(rounds):
        for config in configs:
            if config == "bare":
                forkaudit.uninstall()
            else:
                forkaudit.install(policy="record", json_path=report, scan=config)
            parent, child = one_fork()
            samples[config][0].append(parent)
            samples[config][1].append(child)
    forkaudit.uninstall()
    return samples


def p90(values):
    return sorted(values)[max(0, int(len(values) * 0.9) - 1)]


def scan_figures(tids):
    def scan_cold_then_warm():
        _, s1 = native.scan_now("full", tids)
        _, s2 = native.scan_now("full", tids)
        return s1["bytes"], s1["seconds"], s2["seconds"]

    def memchr_cold_then_warm():
        t1, nbytes = native.memchr_pass("full")
        t2, _ = native.memchr_pass("full")
        return nbytes, t1, t2

    sb, s_cold, s_warm = in_child(scan_cold_then_warm)
    mb, m_cold, m_warm = in_child(memchr_cold_then_warm)
    return sb, s_cold, s_warm, mb, m_cold, m_warm


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=400)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="100 MB, 10 rounds")
    args = ap.parse_args()
    if args.quick:
        args.mb, args.rounds = 100, 10
    if not native.available:
        sys.exit("forkaudit's C-level detection is off here: %s" % native.reason)
    keep, stop, tids = build_process(args.mb, args.threads)
    report = os.path.join(tempfile.mkdtemp(), "bench.jsonl")
    print("python %s, %d MB resident, %d threads, %d rounds per configuration"
          % (sys.version.split()[0], rss_mb(), args.threads, args.rounds))
    samples = fork_rounds(args.rounds, report)
    bare_parent = statistics.median(samples["bare"][0])
    bare_child = statistics.median(samples["bare"][1])
    print("\n%-12s %22s %22s" % ("fork", "parent: median / p90", "child: median / p90"))
    for config, (parent, child) in samples.items():
        print("%-12s %9.2f / %6.2f ms %4.2fx %8.2f / %6.2f ms %5.2fx" % (
            config if config == "bare" else "scan " + config, statistics.median(parent), p90(parent),
            statistics.median(parent) / bare_parent, statistics.median(child), p90(child),
            statistics.median(child) / bare_child))
    worst = max(statistics.median(samples[c][0]) for c in ("full", "libs", "off")) / bare_parent
    print("target: parent-side latency <= %.2fx bare: %.2fx  %s" % (TARGET_PARENT, worst,
                                                                  "PASS" if worst <= TARGET_PARENT else "MISS"))
    sb, s_cold, s_warm, mb, m_cold, m_warm = scan_figures(tids)
    gb = 1e9
    print("\nscan of %.0f MB (scan full): cold %.1f GB/s, warm %.1f GB/s" % (sb / 1e6, sb / s_cold / gb, sb / s_warm / gb))
    print("memchr over %.0f MB (same mappings): cold %.1f GB/s, warm %.1f GB/s" % (mb / 1e6, mb / m_cold / gb, mb / m_warm / gb))
    ratio = (sb / s_cold) / (mb / m_cold)
    print("target: scan >= %.2fx memchr (cold vs cold): %.2fx  %s (warm vs warm: %.2fx)" % (
        TARGET_SCAN, ratio, "PASS" if ratio >= TARGET_SCAN else "MISS", (sb / s_warm) / (mb / m_warm)))
    import json
    with open(report) as f:
        secs = [json.loads(line)["scan"] for line in f]
    for mode in ("full", "libs"):
        these = [s for s in secs if s and s["mode"] == mode]
        if these:
            cut = [s for s in these if s.get("complete") is False]
            print("child-side scan in the audited forks (scan %s): median %.1f ms, median %.0f MB read"
                  " of %.0f MB written; %d of %d cut by a budget (%s)"
                  % (mode, statistics.median(s["seconds"] * 1e3 for s in these),
                     statistics.median(s["bytes"] for s in these) / 1e6,
                     statistics.median(s.get("bytes_total", s["bytes"]) for s in these) / 1e6,
                     len(cut), len(these), ", ".join(sorted({str(s.get("cut")) for s in cut})) or "-"))
    stop.set()
    del keep


if __name__ == "__main__":
    main()
