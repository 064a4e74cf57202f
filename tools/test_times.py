#!/usr/bin/env python3
"""test_times: per-target test times from a Bazel testlogs directory.

Usage: tools/test_times.py TESTLOGS [--top N] [--markdown] [LABEL...]

Reads TESTLOGS/<package>/<target>/test.xml (written by every test run, and
restored with the result when Bazel takes it from the cache, so a cached
result shows the time of the run that produced it) and prints one row per
target, slowest first: seconds, test cases, label. Sharded targets
(shard_N_of_M/) add up their shards' times and also show the longest shard,
which is what the wall clock waits for.

With LABELs, only those targets; a target without a test.xml is listed with
time "-". The time is the test binary's own (gtest's total, or Bazel's for
sh_test), without process start-up and not the build: `./sphere test` prints each pass's build time apart.
"""
import argparse
import os
import sys
import xml.etree.ElementTree as ET


def xml_time(path):
    root = ET.parse(path).getroot()
    cases = list(root.iter("testcase"))
    t = root.get("time")
    if t is None:
        suite = root.find("testsuite")
        t = suite.get("time") if suite is not None else None
    if t is None:
        t = sum(float(c.get("time", 0) or 0) for c in cases)
    return float(t), max(1, len(cases))


def collect(testlogs, labels):
    rows = {}
    for dirpath, _dirs, files in os.walk(testlogs):
        if "test.xml" not in files:
            continue
        rel = os.path.relpath(dirpath, testlogs)
        parts = rel.split(os.sep)
        shard = None
        if parts[-1].startswith("shard_") and "_of_" in parts[-1]:
            shard = parts[-1]
            parts = parts[:-1]
        if parts[-1].startswith("run_") or parts[-1].startswith("attempt_"):
            continue
        label = "//" + "/".join(parts[:-1]) + ":" + parts[-1]
        try:
            t, n = xml_time(os.path.join(dirpath, "test.xml"))
        except (ET.ParseError, OSError, ValueError):
            continue
        r = rows.setdefault(label, {"time": 0.0, "longest": 0.0, "cases": 0,
                                    "shards": 0})
        r["time"] += t
        r["longest"] = max(r["longest"], t)
        r["cases"] += n
        r["shards"] += 1 if shard else 0
    if labels:
        rows = {l: rows.get(l) for l in labels}
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("testlogs")
    ap.add_argument("labels", nargs="*")
    ap.add_argument("--top", type=int, default=0)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_intermixed_args()
    testlogs = os.path.realpath(a.testlogs)
    if not os.path.isdir(testlogs):
        print(f"test_times: no testlogs at {a.testlogs}", file=sys.stderr)
        return 1
    rows = collect(testlogs, a.labels)
    order = sorted(rows.items(),
                   key=lambda kv: -(kv[1]["time"] if kv[1] else -1))
    total = sum(r["time"] for _, r in order if r)
    present = sum(1 for _, r in order if r)
    shown = order[: a.top] if a.top else order
    if a.markdown:
        print("| target | test time (s) | longest shard (s) | test cases |")
        print("|---|---:|---:|---:|")
    for label, r in shown:
        if r is None:
            print(f"{'-':>8}  {label}  (no test.xml)")
            continue
        longest = f"{r['longest']:.1f}" if r["shards"] else ""
        if a.markdown:
            print(f"| `{label}` | {r['time']:.1f} | {longest} | {r['cases']} |")
        else:
            extra = f"  (longest shard {longest} s of {r['shards']})" if longest else ""
            print(f"{r['time']:8.1f}  {label}  [{r['cases']} cases]{extra}")
    if a.markdown:
        print(f"| **{present} targets** | **{total:.1f}** | | |")
    else:
        print(f"{total:8.1f}  total test time of {len(order)} targets "
              "(summed; the pass ran them in parallel)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
