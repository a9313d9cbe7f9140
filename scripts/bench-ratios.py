#!/usr/bin/env python3
"""Ratio tables from bench_kernels_cpu's JSON output (python3 stdlib only).

  bench_kernels_cpu --benchmark_out=/tmp/bench_cpu.json [--benchmark_min_time=0.2]
  scripts/bench-ratios.py /tmp/bench_cpu.json [--time auto|real_time|cpu_time]

Prints, per shape:
  - LoRA layer: unmerged (gemm + shrink + expand) time / merged (gemm only) time,
  - GEMM: our gemm_xwt / bare cblas_sgemm,
  - LoRA segments: our shrink / expand (hand loop or sgemm, whichever we pick) / bare sgemm,
  - merge + unmerge throughput.
Ratios > 1 mean the first one is slower. With --benchmark_repetitions the mean aggregate is
used. Reads the file named on the command line, or stdin when none (or "-") is given.

--time auto (default) compares CPU time when the run used one BLAS and one merge thread (all
work then happens on the timed thread, and CPU time is less disturbed than wall-clock time by
other load on a shared machine), wall-clock time otherwise (CPU time would miss the workers).
"""

import argparse
import json
import sys

UNITS = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}  # -> microseconds


def parse_name(name):
    """'BM_X/hidden:1024/rank:8/real_time' -> ('BM_X', {'hidden': 1024, 'rank': 8})."""
    parts = name.split("/")
    args = {}
    for p in parts[1:]:
        if ":" in p:
            key, value = p.split(":", 1)
            try:
                args[key] = int(value)
            except ValueError:
                args[key] = value
    return parts[0], args


def load(data, time_key):
    runs = {}
    has_mean = any(b.get("aggregate_name") == "mean" for b in data.get("benchmarks", []))
    for b in data.get("benchmarks", []):
        if b.get("error_occurred"):
            print(f"warning: {b['name']}: {b.get('error_message', 'error')}", file=sys.stderr)
            continue
        if has_mean:
            if b.get("aggregate_name") != "mean":
                continue
            name = b.get("run_name", b["name"])
        else:
            if b.get("run_type", "iteration") != "iteration":
                continue
            name = b["name"]
        base, args = parse_name(name)
        us = b[time_key] * UNITS[b.get("time_unit", "ns")]
        runs[(base, tuple(sorted(args.items())))] = (us, b)
    return runs


def get(runs, base, **args):
    return runs.get((base, tuple(sorted(args.items()))))


def table(title, header, rows):
    print(f"\n{title}")
    if not rows:
        print("  (no matching benchmarks)")
        return
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, r in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def fmt_us(us):
    return f"{us:.1f}" if us >= 10 else f"{us:.2f}"


def values(runs, base, key):
    return sorted({dict(k[1])[key] for k in runs if k[0] == base and key in dict(k[1])})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="?", help="benchmark JSON file (default: stdin)")
    ap.add_argument("--time", choices=["auto", "real_time", "cpu_time"], default="auto",
                    help="which time to compare (default auto, see above)")
    opts = ap.parse_args()
    if opts.json in (None, "-"):
        data = json.load(sys.stdin)
    else:
        with open(opts.json) as f:
            data = json.load(f)
    context = data.get("context", {})
    time_key = opts.time
    if time_key == "auto":
        single = context.get("blas_threads") == "1" and context.get("merge_threads") == "1"
        time_key = "cpu_time" if single else "real_time"
    runs = load(data, time_key)

    print(f"bench_kernels_cpu: {context.get('date', '?')}, {context.get('num_cpus', '?')} cpus, "
          f"blas_threads={context.get('blas_threads', '?')}, "
          f"merge_threads={context.get('merge_threads', '?')}, "
          f"avx2={context.get('cpu_simd_avx2', '?')}, "
          f"openblas core {context.get('openblas_core', '?')}, "
          f"load avg {context.get('load_avg', '?')}; times: {time_key}, us")

    rows = []
    for hidden in values(runs, "BM_LoraLayerUnmerged", "hidden"):
        for rank in values(runs, "BM_LoraLayerUnmerged", "rank"):
            for batch in values(runs, "BM_LoraLayerUnmerged", "batch"):
                u = get(runs, "BM_LoraLayerUnmerged", hidden=hidden, rank=rank, batch=batch)
                m = get(runs, "BM_LoraLayerMerged", hidden=hidden, batch=batch)
                if u and m:
                    rows.append([hidden, rank, batch, fmt_us(u[0]), fmt_us(m[0]),
                                 f"{u[0] / m[0]:.3f}"])
    table("LoRA layer, unmerged (gemm + shrink + expand) vs merged (gemm)",
          ["hidden", "rank", "batch", "unmerged_us", "merged_us", "unmerged/merged"], rows)

    rows = []
    for k in values(runs, "BM_GemmOurs", "k"):
        for n in values(runs, "BM_GemmOurs", "n"):
            for m in values(runs, "BM_GemmOurs", "m"):
                o = get(runs, "BM_GemmOurs", m=m, k=k, n=n)
                b = get(runs, "BM_GemmBlas", m=m, k=k, n=n)
                if o and b:
                    rows.append([m, k, n, fmt_us(o[0]), fmt_us(b[0]), f"{o[0] / b[0]:.3f}"])
    table("GEMM y = x W^T, our gemm_xwt vs bare cblas_sgemm",
          ["m", "k", "n", "ours_us", "openblas_us", "ours/openblas"], rows)

    for op in ("Shrink", "Expand"):
        ours, blas = f"BM_Lora{op}SegmentOurs", f"BM_Lora{op}SegmentBlas"
        rows = []
        for hidden in values(runs, ours, "hidden"):
            for rank in values(runs, ours, "rank"):
                for length in values(runs, ours, "len"):
                    o = get(runs, ours, hidden=hidden, rank=rank, len=length)
                    b = get(runs, blas, hidden=hidden, rank=rank, len=length)
                    if o and b:
                        rows.append([hidden, rank, length, fmt_us(o[0]), fmt_us(b[0]),
                                     f"{o[0] / b[0]:.3f}"])
        table(f"LoRA {op.lower()}, one segment: ours vs bare cblas_sgemm",
              ["hidden", "rank", "len", "ours_us", "openblas_us", "ours/openblas"], rows)

    rows = []
    for (base, args), (us, b) in sorted(runs.items(), key=lambda kv: str(kv[0])):
        if base == "BM_MergeUnmerge":
            a = dict(args)
            # bytes_per_second is per wall-clock second; rescale to the compared time
            gbs = b.get("bytes_per_second", 0) * b["real_time"] / b[time_key] / 1e9
            rows.append([a.get("out"), a.get("in"), a.get("rank"), f"{us / 1e3:.1f}",
                         f"{gbs:.2f}", int(b.get("residual_bytes", 0)),
                         int(b.get("exceptions", 0))])
    table("merge + unmerge (18 bytes of traffic per weight element)",
          ["out", "in", "rank", "ms", "GB/s", "residual_bytes", "exceptions"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
