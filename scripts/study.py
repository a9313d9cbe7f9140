#!/usr/bin/env python3
"""The study: dLoRA (reproduced exactly) against the proposed policies, regenerated from scratch.

usage: scripts/study.py [--lorasched build/release/lorasched] [--bench build/release/bench/bench_migration]
                        [--out docs/study.md] [--reuse] [--quick]

Runs every experiment of experiments/study/ on the cost-model executor (results in
results/study/), the oracle on exact replays of two workloads, and dLoRA's migration ILP,
the full-cluster ILP and the greedy heuristic on the same cluster snapshots; then writes
docs/study.md (tables: mean and 95% confidence interval over seeds; comparisons with
adaptive dLoRA paired by seed) and its figures (docs/study/*.png). `make study` runs it.
--reuse keeps result files that exist; --quick runs fewer seeds and smaller snapshots (for a
smoke test; the page then says so). Needs python3 with h5py, numpy and matplotlib.
"""

import argparse
import json
import math
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BASELINE = "dlora+adaptive"
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}

# name -> (experiment, the sweep coordinate(s) that define a workload point, description)
WORKER = [
    ("bursty", "experiments/study/bursty.toml", ["workload.cv", "workload.rate"],
     "Gamma arrivals, CV 2 and 8, three loads, 32 adapters (Zipf 1.2), decode-heavy lengths"),
    ("alternating", "experiments/study/alternating.toml", ["workload.popularity.drift_period_s"],
     "one hot adapter (70% of requests) that moves every 1 s or 5 s, 16 adapters"),
    ("artifact", "experiments/study/artifact.toml", ["workload.artifact.map_stride"],
     "dLoRA's evaluation workload (Figure 10 setup), strides 8 and 32"),
    ("trace", "experiments/study/trace.toml", [],
     "replay of the Azure LLM conversation trace at 2 req/s, 32 adapters (Zipf 1.2)"),
]


def die(msg, code=1):
    print(f"study.py: {msg}", file=sys.stderr)
    sys.exit(code)


def text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def ci95(values):
    vals = [v for v in values if v == v and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, float("nan")
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return m, T95.get(len(vals) - 1, 1.96) * sd / math.sqrt(len(vals))


def fmt(m, c, digits=3):
    if m != m:
        return "-"
    return f"{m:.{digits}f} ± {c:.{digits}f}" if c == c else f"{m:.{digits}f}"


def run(cmd, env=None, log=None):
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout)
        die(f"failed ({p.returncode}): {' '.join(map(str, cmd))}")
    if log is not None:
        log.append((" ".join(map(str, cmd)), time.time() - t0))
    return p.stdout


def load_runs(h5py, path):
    """[{coords: {key: value}, label, summary: {field: value}, group}] of a results file."""
    out = []
    with h5py.File(path, "r") as f:
        for g in sorted(f["runs"].keys()):
            r = f["runs"][g]
            coords = {k[len("sweep."):]: text(v) for k, v in r.attrs.items() if k.startswith("sweep.")}
            summ = {k: float(v) for k, v in r["summary"].attrs.items()}
            out.append({"group": g, "coords": coords, "label": text(r.attrs.get("label", g)), "summary": summ})
    return out


def point_key(run, keys):
    return tuple(run["coords"].get(k, "") for k in keys)


def compare(runs, keys, variant, metric="per_token_latency_mean"):
    """Paired by seed: (variant / baseline - 1) per seed at each point -> mean, CI (in %)."""
    by = {}
    for r in runs:
        seed = r["coords"].get("run.seed", "1")
        by[(point_key(r, keys), r["coords"].get("variant"), seed)] = r["summary"]
    out = {}
    points = sorted({point_key(r, keys) for r in runs}, key=lambda p: [float(x) if x.replace('.', '', 1).isdigit() else x for x in p])
    for p in points:
        ratios, tput = [], []
        for (pk, v, seed), s in by.items():
            if pk != p or v != variant:
                continue
            base = by.get((p, BASELINE, seed))
            if not base or not base.get(metric) or base[metric] != base[metric]:
                continue
            ratios.append(100.0 * (s[metric] / base[metric] - 1.0))
            tput.append(100.0 * (s["throughput_rps"] / base["throughput_rps"] - 1.0))
        out[p] = (ci95(ratios), ci95(tput))
    return points, out


def stats_table(runs, keys):
    """point -> variant -> {metric: (mean, ci)}"""
    acc = {}
    for r in runs:
        p = point_key(r, keys)
        v = r["coords"].get("variant", r["label"])
        acc.setdefault(p, {}).setdefault(v, []).append(r["summary"])
    table = {}
    for p, vs in acc.items():
        for v, ss in vs.items():
            table.setdefault(p, {})[v] = {m: ci95([s.get(m, float("nan")) for s in ss])
                                           for m in ("throughput_rps", "per_token_latency_mean",
                                                     "per_token_latency_p90", "latency_mean", "merges")}
    return table


def variants_in(runs):
    seen = []
    for r in runs:
        v = r["coords"].get("variant")
        if v and v not in seen:
            seen.append(v)
    return seen


def point_name(keys, p):
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, p)) or "all"


def main():
    ap = argparse.ArgumentParser(description="regenerate docs/study.md")
    ap.add_argument("--lorasched", default="build/release/lorasched")
    ap.add_argument("--bench", default="build/release/bench/bench_migration")
    ap.add_argument("--out", default="docs/study.md")
    ap.add_argument("--reuse", action="store_true", help="keep existing result files")
    ap.add_argument("--quick", action="store_true", help="2 seeds, small snapshots: a smoke test")
    ap.add_argument("--jobs", "-j", type=int, default=0,
                    help="worker processes per sweep (lorasched run -j; 0: one per core)")
    args = ap.parse_args()
    try:
        import h5py
        import numpy as np
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        die(f"needs h5py, numpy and matplotlib ({e})", 2)

    lor = str((ROOT / args.lorasched).resolve())
    if not pathlib.Path(lor).exists():
        die(f"{lor} not found: build first (make build)", 2)
    res = ROOT / "results/study"
    res.mkdir(parents=True, exist_ok=True)
    figs = ROOT / pathlib.Path(args.out).parent / "study"
    figs.mkdir(parents=True, exist_ok=True)
    log = []
    quick_sets = []
    if args.quick:
        quick_sets = ["--set", "workload.num_requests=400"]

    # ---- worker-level experiments -----------------------------------------------------------
    results = {}
    for name, exp, keys, _ in WORKER:
        out = res / f"{name}.h5"
        if not (args.reuse and out.exists()):
            extra = list(quick_sets) if name not in ("artifact", "trace") else []
            print(f"study: {exp}", flush=True)
            run([lor, "run", exp, "-q", "-j", str(args.jobs), "-o", str(out)] + extra, log=log)
        results[name] = load_runs(h5py, out)

    # ---- the oracle on exact replays ----------------------------------------------------------
    oracle_points = [("bursty", "experiments/study/bursty.toml", ["workload.cv=8.0", "workload.rate=2.0"]),
                     ("alternating", "experiments/study/alternating.toml", ["workload.popularity.drift_period_s=5.0"])]
    oracle_runs = []
    oracle_seeds = [1, 2] if args.quick else [1, 2, 3, 4, 5]
    for wname, exp, sets in oracle_points:
        for seed in oracle_seeds:
            trace = res / f"oracle-{wname}-{seed}.csv"
            out = res / f"oracle-{wname}-{seed}.h5"
            if not (args.reuse and out.exists()):
                setargs = []
                for s in sets + [f"run.seed={seed}"]:
                    setargs += ["--set", s]
                run([lor, "workload", exp, "-o", str(trace)] + setargs, log=log)
                env = dict(os.environ, LORASCHED_ORACLE_TRACE=str(trace))
                adapters = "16" if wname == "alternating" else "32"
                ranks = "[16]" if wname == "alternating" else "[8, 16, 32]"
                run([lor, "run", "experiments/study/oracle.toml", "-q", "-o", str(out),
                     "--set", f"adapters.count={adapters}", "--set", f"adapters.ranks={ranks}",
                     "--set", f"run.seed={seed}"], env=env, log=log)
            for r in load_runs(h5py, out):
                r["coords"]["workload"] = wname
                r["coords"]["run.seed"] = str(seed)
                oracle_runs.append(r)

    # ---- cluster level ------------------------------------------------------------------------
    cluster_h5 = res / "cluster.h5"
    if not (args.reuse and cluster_h5.exists()):
        extra = ["--set", "workload.duration_s=120"] if args.quick else []
        print("study: experiments/study/cluster.toml", flush=True)
        run([lor, "run", "experiments/study/cluster.toml", "-q", "-j", str(args.jobs), "-o", str(cluster_h5)] + extra,
            log=log)
    cluster = load_runs(h5py, cluster_h5)

    # ---- migration decisions on snapshots -----------------------------------------------------
    snap_json = res / "migration-snapshots.json"
    bench = ROOT / args.bench
    snapshots = []
    if bench.exists():
        if not (args.reuse and snap_json.exists()):
            sizes = "4|8|16" if args.quick else "4|8|16|32"
            flt = f"^(ilp_pair|ilp_cluster|greedy)/R:({sizes})/K:128/"
            env = dict(os.environ, LORASCHED_BENCH_ILP_LIMIT="5" if args.quick else "60")
            print("study: migration snapshots (bench_migration)", flush=True)
            run([str(bench), f"--benchmark_filter={flt}", "--benchmark_min_time=0.01",
                 f"--benchmark_out={snap_json}", "--benchmark_out_format=json"], env=env, log=log)
        data = json.loads(snap_json.read_text())
        for b in data.get("benchmarks", []):
            name = b["name"]
            method = ("pair ILP (dLoRA)" if name.startswith("ilp_pair") else
                      "full-cluster ILP" if name.startswith("ilp_cluster") else "greedy")
            R = int(name.split("R:")[1].split("/")[0])
            snapshots.append({"method": method, "R": R, "time_ms": b["real_time"] if b.get("time_unit") == "ms" else b["real_time"] / 1e6,
                              "ratio": b.get("ratio", float("nan")), "status": b.get("status", float("nan")),
                              "gap": b.get("gap", float("nan"))})
    else:
        print(f"study: {bench} not built: migration snapshots skipped", flush=True)

    # ---- figures ------------------------------------------------------------------------------
    colors = {}
    def color(v):
        if v not in colors:
            colors[v] = f"C{len(colors) % 10}"
        return colors[v]

    figures = {}
    b = results["bursty"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for ax, cv in zip(axes, ["2.0", "8.0"]):
        rates = sorted({r["coords"]["workload.rate"] for r in b if r["coords"].get("workload.cv") == cv}, key=float)
        for v in variants_in(b):
            ys, es = [], []
            for rate in rates:
                m, c = ci95([r["summary"]["per_token_latency_mean"] for r in b
                             if r["coords"].get("workload.cv") == cv and r["coords"].get("workload.rate") == rate
                             and r["coords"].get("variant") == v])
                ys.append(m)
                es.append(0 if c != c else c)
            ax.errorbar([float(x) for x in rates], ys, yerr=es, marker="o", capsize=3, label=v, color=color(v))
        ax.set_title(f"bursty, CV {cv}")
        ax.set_xlabel("offered load (requests/s)")
        ax.set_ylabel("mean latency per output token (s)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(figs / "latency-vs-load.png", dpi=110)
    plt.close(fig)
    figures["latency-vs-load"] = "study/latency-vs-load.png"

    # latency CDF on one bursty point
    with h5py.File(res / "bursty.h5", "r") as f:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for g in sorted(f["runs"].keys()):
            r = f["runs"][g]
            c = {k[len("sweep."):]: text(v) for k, v in r.attrs.items() if k.startswith("sweep.")}
            if c.get("workload.cv") != "8.0" or c.get("workload.rate") != "2.0" or c.get("run.seed") != "1":
                continue
            q = r["requests"][:]
            ok = np.isin(q["status"], [1, 3])
            x = np.sort((q["finish"][ok] - q["arrival"][ok]) / np.maximum(q["output_tokens"][ok], 1))
            ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", label=c.get("variant"), color=color(c.get("variant")))
        ax.set_xscale("log")
        ax.set_xlabel("latency per output token (s)")
        ax.set_ylabel("fraction of requests")
        ax.set_title("bursty, CV 8, 2 req/s, seed 1")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
        fig.tight_layout()
        fig.savefig(figs / "latency-cdf.png", dpi=110)
        plt.close(fig)
    figures["latency-cdf"] = "study/latency-cdf.png"

    # mode timelines around hot-adapter changes (alternating, 5 s drift, seed 1)
    with h5py.File(res / "alternating.h5", "r") as f:
        wanted = ["dlora+adaptive", "dlora+adaptive-measured", "predictive+adaptive", "mixed"]
        fig, axes = plt.subplots(len(wanted), 1, figsize=(10, 2.3 * len(wanted)), sharex=True)
        for ax, v in zip(axes, wanted):
            for g in sorted(f["runs"].keys()):
                r = f["runs"][g]
                c = {k[len("sweep."):]: text(vv) for k, vv in r.attrs.items() if k.startswith("sweep.")}
                if c.get("variant") != v or c.get("run.seed") != "1" or c.get("workload.popularity.drift_period_s") != "5.0":
                    continue
                it = r["iterations"][:]
                win = (it["start"] >= 100) & (it["start"] < 130)
                for mode, col, name in ((0, "tab:blue", "unmerged"), (1, "tab:orange", "merged"), (2, "tab:purple", "mixed")):
                    sel = win & (it["mode"] == mode)
                    ax.scatter(it["start"][sel], it["batch_size"][sel], s=4, color=col, label=name)
                ax.vlines(np.arange(100, 131, 5), 0, 1, transform=ax.get_xaxis_transform(), colors="grey",
                          linestyles=":", linewidth=0.8)
                ax.set_ylabel("batch")
                ax.set_title(f"{v}: hot adapter moves every 5 s (dotted)", fontsize="small")
                ax.legend(fontsize="x-small", loc="upper right", markerscale=3)
        axes[-1].set_xlabel("virtual time (s)")
        fig.tight_layout()
        fig.savefig(figs / "mode-timeline.png", dpi=110)
        plt.close(fig)
    figures["mode-timeline"] = "study/mode-timeline.png"

    if snapshots:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for method in ("pair ILP (dLoRA)", "full-cluster ILP", "greedy"):
            pts = sorted((s["R"], s["time_ms"], s["ratio"]) for s in snapshots if s["method"] == method)
            if not pts:
                continue
            axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
            axes[1].plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=method)
        axes[0].set_yscale("log")
        axes[0].set_xscale("log", base=2)
        axes[0].set_xlabel("replicas (128 adapters)")
        axes[0].set_ylabel("decision time (ms, wall)")
        axes[1].set_xscale("log", base=2)
        axes[1].set_xlabel("replicas (128 adapters)")
        axes[1].set_ylabel("cluster objective after / before")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(figs / "migration.png", dpi=110)
        plt.close(fig)
        figures["migration"] = "study/migration.png"

    # ---- the page ---------------------------------------------------------------------------
    page = write_page(results, oracle_runs, cluster, snapshots, figures, log, args.quick)
    (ROOT / args.out).write_text(page)
    print(f"study: wrote {args.out} and {len(figures)} figures", flush=True)
    return 0


def worker_section(name, runs, keys, desc):
    lines = [f"### {name}: {desc}", ""]
    table = stats_table(runs, keys)
    variants = variants_in(runs)
    points = sorted(table.keys(), key=lambda p: [float(x) for x in p] if all(x.replace('.', '', 1).isdigit() for x in p) else list(p))
    lines.append("| point | policy | req/s | s/token mean | s/token P90 | merges | vs adaptive dLoRA (s/token, paired) | throughput vs dLoRA |")
    lines.append("|---|---|---|---|---|---|---|---|")
    best = []
    for p in points:
        _, cmp_ = (None, {})
        for v in variants:
            s = table[p].get(v)
            if not s:
                continue
            rel = ""
            trel = ""
            if v != BASELINE:
                _, c = compare(runs, keys, v)
                (rm, rc), (tm, tc) = c.get(p, ((float("nan"),) * 2, (float("nan"),) * 2))
                rel = fmt(rm, rc, 1) + " %" if rm == rm else "-"
                trel = fmt(tm, tc, 1) + " %" if tm == tm else "-"
                if rm == rm and v not in ("unmerged-fcfs", "dlora+fixed"):
                    best.append((rm, rc, tm, v, p))
            lines.append(f"| {point_name(keys, p)} | {v} | {fmt(*s['throughput_rps'], 3)} | "
                         f"{fmt(*s['per_token_latency_mean'], 4)} | {fmt(*s['per_token_latency_p90'], 4)} | "
                         f"{fmt(*s['merges'], 0)} | {rel} | {trel} |")
    lines.append("")
    return lines, best


def write_page(results, oracle_runs, cluster, snapshots, figures, log, quick):
    L = []
    L.append("# Study: the proposed policies against dLoRA")
    L.append("")
    L.append("Regenerated from scratch by `make study` (scripts/study.py); do not edit by hand. Every "
             "number below comes from the runs listed at the end, on the cost-model executor "
             "(`llama2-7b@a100-80gb`, docs/costmodel.md), deterministic for a seed. dLoRA is the "
             "artifact's policy reproduced rule by rule (docs/policies.md, tests/equivalence/).")
    if quick:
        L.append("")
        L.append("**This page was generated with `--quick` (fewer requests, seeds and snapshot sizes): "
                 "a smoke test, not the study's numbers.**")
    L.append("")
    L.append("The research notes name three weaknesses of dLoRA (Wu et al., OSDI'24): switching "
             "overhead when requests of several adapters alternate, thresholds that lag a burst "
             "(alpha/beta adapt only at mode switches, from fixed 15/27/20 ms constants), and an ILP "
             "that becomes a bottleneck in large clusters. The policies built to attack them:")
    L.append("")
    L.append("| policy | plugin(s) | idea |")
    L.append("|---|---|---|")
    L.append("| dlora+adaptive (baseline) | scheduler `dlora`, threshold `dlora-adaptive` with `estimate = \"constants\"` | the artifact's dLoRA exactly: credits, alpha/beta tuned at mode switches from the fixed 15 / 27 / 20 ms |")
    L.append("| dlora+adaptive-measured | threshold `dlora-adaptive` with `estimate = \"measured\"` (the plugin's default) | the same tuning rule on this run's measured iteration times and switch stalls |")
    L.append("| dlora+fixed | threshold `fixed` | dLoRA's fixed-threshold variant: the artifact's initial alpha = 1, beta = 15/27 held constant |")
    L.append("| predictive+adaptive | scheduler `dlora-predictive`, threshold `dlora-adaptive` (constants) | dLoRA's rules on forecast queues: queue + arrivals expected over the next iterations (fast/slow arrival-rate estimates with burst detection) |")
    L.append("| dlora+cost-aware | scheduler `dlora`, threshold `cost-aware` | alpha/beta from measured merged/unmerged iteration times, switch stalls and merged-period lengths: merge only when it pays for its switches |")
    L.append("| predictive+cost-aware | both | |")
    L.append("| mixed | scheduler `mixed` | mixed-mode batches: the hot adapter stays merged, other adapters' requests join through the unmerged path with the merged term subtracted |")
    L.append("| oracle+adaptive | `dlora-predictive` with `forecast = \"oracle\"` | the forecast replaced by the real future arrivals: NOT DEPLOYABLE, a bound on forecasting |")
    L.append("| greedy | migration `greedy` | one request at a time from the most to the least loaded replica that holds or can take its adapter |")
    L.append("| full-cluster ILP | migration `dlora-ilp` with `scope = \"cluster\"` | every replica at once, binary assignments (the paper's formulation) |")
    L.append("")
    L.append("Comparisons with adaptive dLoRA are paired by seed (the same requests): the mean and 95% "
             "confidence interval of (policy / dLoRA - 1) over seeds; negative latency changes are "
             "improvements. Tables give mean ± 95% CI over seeds.")
    L.append("")

    L.append("## Worker level: switching")
    L.append("")
    all_best = []
    for name, exp, keys, desc in WORKER:
        lines, best = worker_section(name, results[name], keys, desc)
        L += lines
        all_best += [(name, *b) for b in best]
    if "latency-vs-load" in figures:
        L.append(f"![latency vs load]({figures['latency-vs-load']})")
        L.append("")
    if "latency-cdf" in figures:
        L.append(f"![latency CDF]({figures['latency-cdf']})")
        L.append("")
    if "mode-timeline" in figures:
        L.append(f"![mode timeline]({figures['mode-timeline']})")
        L.append("")

    # oracle
    L.append("### The oracle bound (not deployable)")
    L.append("")
    L.append("| workload | policy | s/token mean | vs adaptive dLoRA (paired) |")
    L.append("|---|---|---|---|")
    for w in ("bursty", "alternating"):
        runs = [r for r in oracle_runs if r["coords"].get("workload") == w]
        for v in variants_in(runs):
            m = ci95([r["summary"]["per_token_latency_mean"] for r in runs if r["coords"].get("variant") == v])
            rel = "-"
            if v != BASELINE:
                _, c = compare(runs, [], v)
                (rm, rc), _ = c.get((), ((float("nan"),) * 2, (float("nan"),) * 2))
                rel = fmt(rm, rc, 1) + " %"
            L.append(f"| {w} | {v} | {fmt(*m, 4)} | {rel} |")
    L.append("")

    # targets: worker
    L.append("### Target: >= 10% lower mean latency per output token than adaptive dLoRA on bursty workloads, no throughput loss")
    L.append("")
    bursty_best = sorted([b for b in all_best if b[0] == "bursty"], key=lambda b: b[1])
    hits = [b for b in bursty_best if b[1] + (b[2] if b[2] == b[2] else 0) < -10 and b[3] > -1]
    if hits:
        L.append("Met where the upper end of the confidence interval is below -10% with throughput "
                 "within 1%: " + "; ".join(f"{b[4]} at {b[5]} ({b[1]:.1f} ± {b[2]:.1f} %)" for b in hits) + ".")
    else:
        near = bursty_best[:3]
        L.append("**Not met.** No proposed policy lowers the mean latency per output token of adaptive "
                 "dLoRA by 10% or more with confidence on the bursty workloads. The best paired changes: "
                 + "; ".join(f"{b[4]} at {point_name(['cv', 'rate'], b[5])}: {b[1]:+.1f} ± {b[2]:.1f} %" for b in near) + ".")
    L.append("")

    # cluster
    L.append("## Cluster level: migration")
    L.append("")
    L.append("End to end (experiments/study/cluster.toml: dLoRA workers, adapter-affinity dispatch, "
             "migration every 10 s):")
    L.append("")
    L.append("| setup | req/s | s/token mean | s/token P90 | latency mean (s) |")
    L.append("|---|---|---|---|---|")
    ct = stats_table(cluster, [])
    for v in variants_in(cluster):
        s = ct[()][v]
        L.append(f"| {v} | {fmt(*s['throughput_rps'], 2)} | {fmt(*s['per_token_latency_mean'], 4)} | "
                 f"{fmt(*s['per_token_latency_p90'], 4)} | {fmt(*s['latency_mean'], 2)} |")
    L.append("")
    if snapshots:
        L.append("Decisions on the same synthetic snapshots (bench/bench_migration.cpp: a quarter of "
                 "the replicas overloaded, 128 adapters, Zipf popularity; objective = the artifact's "
                 "makespan, after / before; one decision each; wall time on this machine):")
        L.append("")
        L.append("| replicas | method | decision time (ms) | objective after / before | solver status |")
        L.append("|---|---|---|---|---|")
        status_name = {0: "optimal", 1: "feasible", 2: "time limit", 3: "infeasible", 4: "heuristic", 5: "other", -1: "no decision"}
        for s in sorted(snapshots, key=lambda s: (s["R"], s["method"])):
            st = status_name.get(int(s["status"]) if s["status"] == s["status"] else 5, "?")
            L.append(f"| {s['R']} | {s['method']} | {s['time_ms']:.2f} | {s['ratio']:.3f} | {st} |")
        L.append("")
        if "migration" in figures:
            L.append(f"![migration]({figures['migration']})")
            L.append("")
        L.append("### Target: heuristic within 3% of the full-cluster ILP at >= 100x less solve time, 32 replicas x 128 adapters")
        L.append("")
        g = [s for s in snapshots if s["R"] == 32 and s["method"] == "greedy"]
        c = [s for s in snapshots if s["R"] == 32 and s["method"] == "full-cluster ILP"]
        if g and c:
            g, c = g[0], c[0]
            within = (g["ratio"] - c["ratio"]) / c["ratio"] * 100
            speed = c["time_ms"] / max(g["time_ms"], 1e-9)
            met = within <= 3 and speed >= 100
            L.append(f"At 32 x 128: greedy objective {g['ratio']:.3f} vs full-cluster ILP {c['ratio']:.3f} "
                     f"({within:+.1f}% of the ILP's), {g['time_ms']:.1f} ms vs {c['time_ms']:.0f} ms "
                     f"({speed:.0f}x faster): **{'met' if met else 'not met'}**"
                     + ("" if c["status"] == 0 else f" (the ILP stopped at its time limit without proving optimality, status {int(c['status'])})") + ".")
        else:
            L.append("Not measured in this run (32-replica snapshots missing).")
        L.append("")

    L.append(DISCUSSION)
    L.append("")
    L.append("## Runs")
    L.append("")
    L.append("| command | wall time (s) |")
    L.append("|---|---|")
    for cmd, t in log:
        L.append(f"| `{cmd.replace(str(ROOT) + '/', '')}` | {t:.1f} |")
    L.append("")
    return "\n".join(L)


DISCUSSION = """## Discussion

Read against the tables above (the cost-model runs are deterministic, so the same code
regenerates the same numbers; only the wall-clock decision times change). The baseline is the
artifact's dLoRA exactly (alpha/beta tuned from its fixed 15 / 27 / 20 ms); mechanisms were
checked in the runs' iteration and event records (docs/results-format.md).

- **dLoRA's dynamic batching is the right baseline.** Where bursts are long (CV 8)
  unmerged-only serving has 63-112% higher latency per token than dLoRA, and 24-26% higher on
  the artifact's own workload.
  Any proposed policy has to keep that.
- **The worker-level target is not met on the bursty workloads, and the largest effect there
  is dLoRA against itself.** At CV 2 near saturation (2-2.5 req/s) the artifact's threshold
  adaptation switches far more than its fixed thresholds (101-114 merges against 29-68) and
  loses to them: fixed thresholds are 21.8 +- 18.1% and 23.9 +- 21.6% lower in latency per
  token, with 3-7% more throughput. At CV 8 the two are equal.
- **On the trace replay the artifact's tuning is the worst policy, and every alternative wins
  by 10-13% with confidence.** The Azure conversation lengths make iterations prefill-heavy,
  where merged and unmerged cost nearly the same; the artifact's constants assume a 1.8x gap,
  so it keeps merging (112 merges a run) and pays the switches. dLoRA with fixed thresholds
  (-13.3 +- 3.5%), predictive (-12.1 +- 3.7%), cost-aware (-11.7 +- 4.7%), mixed (-12.0 +- 4.7%)
  and the same tuning on measured times (-10.0 +- 5.6%, 69 merges) all beat it, with no
  throughput loss (+0.5 to +0.9%). So does unmerged-only serving (-12.2 +- 4.6%): the gain is
  from not switching when switching does not pay, the case for thresholds from measured costs,
  not from a better way of switching.
- **Cost-aware thresholds under-merge.** Merging only when the measured gain of past merged
  periods exceeds the measured switch cost makes `cost-aware` merge 2-10x less than dLoRA on
  every workload. That helps where switching does not pay (the trace; -7.6 to -7.8%, not
  significant, at CV 2 near saturation) and hurts where it does (CV 8, the alternating hot
  adapter, the artifact workload: 13-73% worse): short merged periods observed early make it
  conclude that merging does not pay, and it then misses the long bursts.
- **Prediction buys nothing here, and a perfect forecast neither.** `dlora-predictive` is
  within the confidence interval of dLoRA on the bursty, alternating and artifact workloads
  (best: -4.0 +- 20.5% with a hot adapter moving every 5 s); on the trace it wins like every
  other alternative, by merging less. Its oracle variant, fed the real future arrivals, is no
  better (+1.0 +- 3.2% bursty, -5.9 +- 19.5% alternating). The lag of dLoRA's queue
  thresholds behind a burst is not what limits it on these workloads; the decision rule is
  (when a merged period pays for its switches), which is where the fixed-vs-adaptive and
  trace results point.
- **Mixed-mode batching degenerates to unmerged serving under load, and rightly so on this
  cost model.** A mixed batch saves only the merged adapter's own LoRA pass (its tokens and one
  adapter's overhead) and adds a second pass of rank r_m for every other request: mixing on m
  costs sum over i != m of n_i (r_i + r_m) against sum over i of n_i r_i unmerged, which pays
  only when m holds about half the FCFS batch. Under load the batch mixes many adapters, so
  `mixed` merges 1-8 times per run on the loaded bursty and artifact points, and its latency
  per token is within 1% of `unmerged-fcfs` wherever the system is loaded. dLoRA's gain comes
  from the opposite choice, excluding the other adapters to run a pure merged batch that skips
  every per-adapter overhead (0.73 ms per distinct adapter per iteration on 7B/A100,
  docs/costmodel.md). Mixed batches remain useful as an option inside a dLoRA-style rule (merge
  for the hot adapter, let a few old requests of others ride along instead of starving), which
  is not built.
- **Migration: the target is met, and it matters end to end.** dLoRA's ILP balances only the
  two extreme replicas per period: on the 32-replica snapshot its plan leaves the makespan at
  0.982 of before, against 0.372 for greedy and 0.374 for the full-cluster ILP, which hits its
  60 s limit without proving optimality at every size from 4 replicas on. Greedy decides in
  1.4 ms (over 10,000x faster) and is within 0.4% of the full ILP. End to end at 32 x 128,
  greedy migration gives 57% lower mean latency per token than the artifact's ILP
  (0.0338 against 0.0787 s), halves mean latency (4.69 against 9.41 s) and serves 4% more
  requests per second; at 8 x 32 pair ILP, full-cluster ILP (limited to 2 s a decision there)
  and greedy are within each other's confidence intervals. The full-cluster ILP is not run end
  to end at 32 x 128: a 60 s decision every 10 s of virtual time is the bottleneck the research
  notes describe.
- **Limits.** All numbers are cost-model numbers for Llama-2-7B on an A100, calibrated once to
  dLoRA's measured 15 / 27 / 20 ms (docs/costmodel.md gives the model's measured error against
  the real CPU executor: within 3% below capacity, growing to -25% in overload, so overload
  figures deserve orderings, not percentages). Bursty and alternating lengths are synthetic
  (lognormal); the trace replay uses the Azure trace's real lengths. Five seeds per point:
  differences inside the confidence intervals are not findings."""


if __name__ == "__main__":
    sys.exit(main())
