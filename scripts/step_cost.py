#!/usr/bin/env python3
"""Where a simulated iteration's time goes as the cluster grows: instructions and memory.

usage: scripts/step_cost.py profile BENCH OUT.json [--jobs N]
       scripts/step_cost.py table PROFILE.json TIMED.json [--docs docs/performance.md]

`profile` runs bench_simulation (BENCH, a build's bench/bench_simulation) under valgrind's
callgrind at one replica (BM_Scale's 4,000 requests and BM_OneReplica's 40), 32, 256 and
1,000 replicas (BM_Scale), and 1,000 replicas with 10,000 and with 10 adapters (BM_Fleet),
counting only inside the event loop (`Simulation::run`): the instructions it executes (and
how many of them are the cluster's bookkeeping: the event loop, its queue of replicas, the
cluster view, dispatch, the warm-up of the replicas due next), and the cache lines it fetches
from beyond a 32 KiB and from beyond a 1 MiB cache (callgrind's model: 64-byte lines, 8-way;
1 MiB is this machine's per-core L2; the model ignores prefetch instructions, so these are
lines the step needs, whether or not the warm-up fetched them in time). Counts are exact and
repeat from run to run; all points take about fifteen minutes on two cores (N at a time,
default 2). Needs valgrind (`apt-get install valgrind`); the build needs no debug
information.

`table` divides the counts by the iterations simulated and sets them beside the CPU time per
iteration of an ordinary timed run (TIMED.json: `bench_simulation --benchmark_out=...`, the
file scripts/bench_simulation.py reads; median repetition per point). The time an iteration's
instructions would take at the one-replica run's speed (BM_OneReplica's CPU time per
instruction, the same per-replica workload, all of it in cache) is subtracted from each point's
time; what is left is the time the larger clusters lose to memory, shown per line from beyond
the cache. With --docs the table goes into that file between `<!-- BEGIN step-cost -->` and
`<!-- END step-cost -->`. Bad input: one line on stderr, exit status 2.
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from bench_simulation import iteration_rate, load, per_request
from docblock import replace_block

BEGIN = "<!-- BEGIN step-cost -->"
END = "<!-- END step-cost -->"
CACHE = ["--D1=32768,8,64", "--LL=1048576,8,64"]
# (key as scripts/bench_simulation.py names points, benchmark filter, label)
POINTS = [
    (("BM_Scale", 1), "BM_Scale/replicas:1/", "1 x 10 (BM_Scale, 4,000 requests)"),
    (("BM_OneReplica", 1), "BM_OneReplica/", "1 x 10 (BM_OneReplica, 40 requests, 400 runs)"),
    (("BM_Scale", 32), "BM_Scale/replicas:32/", "32 x 320"),
    (("BM_Scale", 256), "BM_Scale/replicas:256/", "256 x 2,560"),
    (("BM_Scale", 1000), "BM_Scale/replicas:1000/", "1,000 x 10,000"),
    # The same 1,000 replicas on a trimmed heap, with 10,000 and with 10 adapters in the
    # fleet: what the per-adapter arrays of length N cost a step.
    (("BM_Fleet", 10000), "BM_Fleet/replicas:1000/adapters:10000/",
     "1,000 x 10,000 (BM_Fleet, trimmed heap)"),
    (("BM_Fleet", 10), "BM_Fleet/replicas:1000/adapters:10/", "1,000 x 10 (BM_Fleet, trimmed heap)"),
]
REFERENCE = ("BM_OneReplica", 1)
# Self instructions of these functions are the cluster's bookkeeping (the event loop, its
# queue of replicas, the cluster view, dispatch and the warm-up of the replicas due next),
# which a one-replica run hardly executes.
CLUSTER = re.compile(r"lorasched::(Simulation|LiveView|RunQueue)::|lorasched::Replica::prefetch"
                     r"|Dispatch|LeastLoaded")


def die(message):
    print(f"step_cost.py: {message}", file=sys.stderr)
    sys.exit(2)


def profile_point(bench, key, filt, label, tmp):
    stem = os.path.join(tmp, f"{key[0]}-{key[1]}")
    cmd = ["valgrind", "--tool=callgrind", "--cache-sim=yes", *CACHE,
           "--toggle-collect=lorasched::Simulation::run(*", f"--callgrind-out-file={stem}.out",
           bench, f"--benchmark_filter={filt}", f"--benchmark_out={stem}.json",
           "--benchmark_out_format=json"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        die(f"{' '.join(cmd[:2])} ... {filt} failed: {run.stderr.strip().splitlines()[-1:]}")
    events, totals = None, None
    with open(f"{stem}.out", encoding="utf-8") as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith(("totals:", "summary:")):
                totals = [int(x) for x in line.split()[1:]]
    if not events or not totals:
        die(f"{stem}.out has no callgrind totals")
    count = dict(zip(events, totals))
    annotate = subprocess.run(["callgrind_annotate", "--auto=no", "--inclusive=no",
                               "--show=Ir", "--threshold=100", f"{stem}.out"],
                              capture_output=True, text=True)
    if annotate.returncode != 0:
        die(f"callgrind_annotate failed on {filt}'s profile: {annotate.stderr.strip()[-200:]}")
    cluster = 0
    for line in annotate.stdout.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+\S*?:(\S.*)$", line)
        if m and CLUSTER.search(m.group(2)):
            cluster += int(m.group(1).replace(",", ""))
    bench_json = json.load(open(f"{stem}.json", encoding="utf-8"))["benchmarks"]
    if len(bench_json) != 1:
        die(f"filter {filt} ran {len(bench_json)} benchmarks, expected 1")
    b = bench_json[0]
    if "iterations/run" not in b:
        die(f"{bench} has no iterations/run counter (a build before scripts/step_cost.py)")
    return {"family": key[0], "replicas": key[1], "filter": filt, "label": label,
            "iterations": b["iterations/run"] * b["iterations"], "instructions": count["Ir"],
            "cluster_instructions": cluster, "lines_read": count["DLmr"],
            "lines_written": count["DLmw"], "l1_lines": count["D1mr"] + count["D1mw"]}


def profile(args):
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        die("valgrind is not installed (apt-get install valgrind)")
    if not os.access(args.bench, os.X_OK):
        die(f"{args.bench} is not an executable")
    version = subprocess.run(["valgrind", "--version"], capture_output=True,
                             text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(profile_point, args.bench, k, f, lab, tmp) for k, f, lab in POINTS]
        points = [f.result() for f in futures]
    out = {"context": {"bench": os.path.abspath(args.bench), "valgrind": version,
                       "cache": " ".join(CACHE), "counted": "inside Simulation::run",
                       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                           timespec="seconds")},
           "points": points}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")


def table(args):
    try:
        prof = json.load(open(args.profile, encoding="utf-8"))
        counted = {(p["family"], p["replicas"]): p for p in prof["points"]}
        fields = {"iterations", "instructions", "cluster_instructions", "lines_read",
                  "lines_written", "l1_lines"}
        for key, p in counted.items():
            if not fields <= p.keys() or p["iterations"] <= 0:
                raise ValueError(f"point {key[0]}/{key[1]} lacks {sorted(fields - p.keys())} "
                                 "or has no iterations")
    except (OSError, ValueError, KeyError, TypeError) as e:
        die(f"cannot read {args.profile} as step_cost.py profile output: {e}")
    ctx, timed = load(args.timed)
    if REFERENCE not in counted or REFERENCE not in timed:
        die(f"{REFERENCE[0]} is missing from {args.profile} or {args.timed}")

    def per_iteration(key):
        c = counted[key]
        it = c["iterations"]
        return {"instructions": c["instructions"] / it, "cluster": c["cluster_instructions"] / it,
                "read": c["lines_read"] / it, "written": c["lines_written"] / it,
                "l1": c["l1_lines"] / it, "ns": 1e9 / iteration_rate(timed[key])}

    ref = per_iteration(REFERENCE)
    ns_per_instruction = ref["ns"] / ref["instructions"]

    def memory_ns(p):
        """What is left of an iteration's time after its instructions at the reference speed."""
        return p["ns"] - p["instructions"] * ns_per_instruction
    rows = [
        f"Counted with valgrind's callgrind inside the event loop ({prof['context']['valgrind']}, "
        f"{prof['context']['cache']}; {prof['context']['date']}); timed by a run of "
        f"{ctx.get('date', '?')} on {ctx.get('host_name', '?')} (CPU time of the simulating "
        "thread, median of its repetitions). Generated by `scripts/step_cost.py`. The "
        "instructions' time is at the speed of `BM_OneReplica` "
        f"({ns_per_instruction * 1000:.0f} ps per instruction, all of it in cache).",
        "",
        "| point | instructions per iteration | vs one replica | of them cluster level | "
        "lines from beyond 32 KiB per iteration | from beyond 1 MiB (read + written) | "
        "CPU ns per iteration | ns for its instructions | ns left (memory) | "
        "ns left per line from beyond 1 MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, _, label in POINTS:
        if key not in counted or key not in timed:
            continue
        p = per_iteration(key)
        compute = p["instructions"] * ns_per_instruction
        lines = p["read"] + p["written"]
        left = memory_ns(p)
        rows.append(
            f"| {label} | {p['instructions']:,.0f} | {p['instructions'] / ref['instructions']:.2f} "
            f"| {p['cluster']:,.0f} | {p['l1']:.1f} "
            f"| {lines:.1f} ({p['read']:.1f} + {p['written']:.1f}) "
            f"| {p['ns']:,.0f} | {compute:,.0f} | {left:,.0f} "
            f"| {f'{left / lines:.1f}' if lines >= 10 else '-'} |")
    one, big = ("BM_Scale", 1), ("BM_Scale", 1000)
    if one in timed and big in timed:
        # Per request: rate = iteration rate / iterations per request.
        its_one, its_big = per_request(timed[one]), per_request(timed[big])
        need = 1e9 / (0.5 * timed[one]["rate"] * its_big)
        now = 1e9 / iteration_rate(timed[big])
        rows += ["", f"For the 1,000-replica loop to reach 50% of the one-replica rate per request "
                 f"(`BM_Scale`, {its_one:.1f} and {its_big:.1f} iterations per request), its "
                 f"iteration may take {need:,.0f} ns: {100 * (1 - need / now):.0f}% less than "
                 f"the {now:,.0f} ns measured."]
    dense, sparse = ("BM_Fleet", 10), ("BM_Fleet", 10000)
    if all(k in counted and k in timed for k in (dense, sparse)):
        d, sp = per_iteration(dense), per_iteration(sparse)
        lines = (sp["read"] + sp["written"]) - (d["read"] + d["written"])
        memory = memory_ns(sp) - memory_ns(d)
        rows += ["", f"`BM_Fleet`, 10 adapters in the fleet against 10,000 (per-adapter arrays of "
                 f"length 10 instead of 10,000 in every replica): {lines:.1f} fewer lines from "
                 f"beyond 1 MiB and {sp['instructions'] - d['instructions']:,.0f} fewer "
                 f"instructions per iteration, {sp['ns'] - d['ns']:,.0f} ns less per iteration, "
                 f"{memory:,.0f} ns of it memory"
                 + (f" ({memory / lines:.0f} ns per line)." if lines >= 1 else ".")]
    text = "\n".join(rows)
    print(text)
    if args.docs:
        replace_block(args.docs, BEGIN, END, text, "step_cost.py")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile")
    p.add_argument("bench")
    p.add_argument("out")
    p.add_argument("--jobs", type=int, default=2)
    t = sub.add_parser("table")
    t.add_argument("profile")
    t.add_argument("timed")
    t.add_argument("--docs")
    args = ap.parse_args(argv)
    if args.command == "profile":
        if args.jobs < 1:
            die("--jobs must be at least 1")
        profile(args)
    else:
        table(args)


if __name__ == "__main__":
    main(sys.argv[1:])
