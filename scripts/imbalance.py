#!/usr/bin/env python3
"""Load imbalance over time across the replicas of each run in a lorasched results file.

usage: scripts/imbalance.py RESULTS.h5 [--window 10] [--plot OUT.png] [--runs SUBSTRING ...]

A replica's load in a window of virtual time is the mean of `iterations.queued` (the
requests it holds: waiting, running and swapped, as the scheduler sees them) over the
iterations it planned in that window; a replica that planned none has load 0. The window's
imbalance is max / mean of the replicas' loads (1 = balanced; R = all load on one of R
replicas); windows where the cluster holds no request are skipped. Printed per run: the
mean and P90 of the imbalance over windows, and the mean coefficient of variation of the
loads. Only reads the file, with the repository's `lorasched` package (python/; needs h5py,
numpy and pandas, and matplotlib for --plot).
"""
import argparse
import pathlib
import sys
import tomllib

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "python"))
import lorasched  # noqa: E402  (python/lorasched, next to this script's directory)


def die(message):
    """Bad input: one line on stderr, exit status 2 (as lorasched and scripts/plot.py)."""
    print(f"imbalance.py: {message}", file=sys.stderr)
    sys.exit(2)


def window_loads(iters, replicas, window):
    """loads[w, r]: mean `queued` of replica r's iterations that start in window w."""
    if len(iters) == 0:
        return np.zeros((0, replicas))
    w = np.floor(iters["start"].to_numpy() / window).astype(np.int64)
    r = iters["replica"].to_numpy().astype(np.int64)
    n_w = int(w.max()) + 1
    total = np.zeros((n_w, replicas))
    count = np.zeros((n_w, replicas))
    np.add.at(total, (w, r), iters["queued"].to_numpy().astype(np.float64))
    np.add.at(count, (w, r), 1.0)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def imbalance(loads):
    mean = loads.mean(axis=1)
    busy = mean > 0
    ratio = loads[busy].max(axis=1) / mean[busy]
    cv = loads[busy].std(axis=1) / mean[busy]
    return ratio, cv, busy


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--window", type=float, default=10.0, help="window of virtual time (s)")
    ap.add_argument("--plot", help="write imbalance over time of every run to this PNG")
    ap.add_argument("--runs", nargs="*", default=[], help="only runs whose label has one of these")
    args = ap.parse_args(argv)
    if args.window <= 0:
        die("--window must be > 0")

    try:
        res = lorasched.load(args.results)
    except lorasched.ResultsError as e:
        die(str(e))
    iterations = res.iterations
    rows = []
    for name, run in res.runs.iterrows():
        label = run.get("label") or name
        if args.runs and not any(s in label for s in args.runs):
            continue
        cfg = tomllib.loads(run["experiment_toml"])
        replicas = int(cfg.get("cluster", {}).get("replicas", 1))
        loads = window_loads(iterations[iterations["run"] == name], replicas, args.window)
        ratio, cv, busy = imbalance(loads)
        times = (np.arange(len(loads)) + 0.5) * args.window
        rows.append((label, replicas, ratio, cv, times[busy]))

    width = max([len(r[0]) for r in rows] + [3])
    print(f"{'run':<{width}}  replicas  windows  max/mean avg  max/mean P90  CV avg")
    for label, replicas, ratio, cv, _ in rows:
        if len(ratio) == 0:
            print(f"{label:<{width}}  {replicas:8d}  {0:7d}  {'-':>12}  {'-':>12}  {'-':>6}")
            continue
        print(f"{label:<{width}}  {replicas:8d}  {len(ratio):7d}  {ratio.mean():12.2f}  "
              f"{np.percentile(ratio, 90):12.2f}  {cv.mean():6.2f}")
    print(f"(windows of {args.window:g} s of virtual time; load = mean `queued` per replica; "
          "max/mean 1 = balanced)")

    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(10, 4))
        for label, _, ratio, _, t in rows:
            ax.plot(t, ratio, label=label, lw=1)
        ax.set_xlabel("virtual time (s)")
        ax.set_ylabel("load max / mean over replicas")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
