#!/usr/bin/env python3
"""Plots of a lorasched results file (docs/results-format.md).

usage: scripts/plot.py FILE.h5 [--out DIR] [--group-by X,SERIES] [--max-timelines N]

Writes into DIR (default: results/<file stem>/):
  latency_cdf.png  CDF of the latency per output token (dLoRA's metric), one line per run,
                   labelled with the run's `label` attribute
  timeline.png     one panel per run: the batch size of every iteration over virtual time,
                   coloured by mode (merged / unmerged), the alpha/beta thresholds on a twin
                   axis when the run had them, and merge/unmerge events marked
  throughput.png   only when the runs differ in their workload rate: completed requests per
                   second against the offered rate, one line per other sweep setting
  latency_vs_rate.png  likewise: mean latency per output token against the offered rate
  groups.png       when runs are grouped (--group-by, or the experiment's [report] group_by
                   with two keys): mean latency per output token and its P90, bars per
                   SERIES value at each X value, 95% confidence intervals over the group's
                   runs (e.g. seeds): the layout of dLoRA's Figure 10

The timeline has one panel per run, at most --max-timelines (default 8) of them.

Refuses a `.partial` file and any file whose status is not "complete" (exit code 2).
Reads the file with the repository's `lorasched` package (python/lorasched); needs python3
with h5py, numpy, pandas and matplotlib (Agg backend, no display).
"""

import argparse
import pathlib
import sys

EXIT_INPUT = 2
EXIT_RUNTIME = 1


def die(message, code=EXIT_INPUT):
    print(f"plot.py: {message}", file=sys.stderr)
    sys.exit(code)


class Run:
    """One run of a lorasched.Results, as the plots read it: label, experiment text, sweep
    coordinates, summary, and its rows of the record tables."""

    def __init__(self, res, tables, group):
        row = res.runs.loc[group]
        self.group = group
        label = row.get("label", "")
        self.label = label if isinstance(label, str) and label else group
        toml = row.get("experiment_toml", "")
        self.experiment_toml = toml if isinstance(toml, str) else ""
        self.coords = {c: str(row[c]) for c in res.coords if c in row.index and row[c] == row[c]}
        self.summary = res.summaries.loc[group]
        self._tables = tables

    def table(self, name):
        return self._tables(name, self.group)


def run_rate(run):
    """The workload rate a run used: from its label ("workload.rate=2 ...") when the sweep
    set it, else from [workload] rate of its experiment text, else None."""
    label = run.label
    for token in label.split():
        if token.startswith("workload.rate="):
            try:
                return float(token.split("=", 1)[1])
            except ValueError:
                return None
    try:
        import tomllib
    except ImportError:  # python < 3.11
        return None
    try:
        doc = tomllib.loads(run.experiment_toml)
    except (tomllib.TOMLDecodeError, ValueError):
        return None
    rate = doc.get("workload", {}).get("rate")
    return float(rate) if isinstance(rate, (int, float)) else None


def label_without_rate(label):
    return " ".join(t for t in label.split() if not t.startswith("workload.rate=")) or "runs"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="plot.py", description="Latency CDF, mode timeline and throughput plots of a lorasched results file.")
    parser.add_argument("file", help="results file (.h5) written by `lorasched run`")
    parser.add_argument("--out", help="output directory (default: results/<file stem>/)")
    parser.add_argument("--group-by", help="X,SERIES: two sweep coordinates (e.g. "
                        "workload.artifact.map_stride,variant) for groups.png")
    parser.add_argument("--max-timelines", type=int, default=8, help="timeline panels at most")
    args = parser.parse_args(argv)

    path = pathlib.Path(args.file)
    if path.name.endswith(".partial"):
        die(f"{path} is an incomplete run (.partial): the run was killed or failed; rerun it "
            "(open it with h5py for a post-mortem)")
    if not path.exists():
        die(f"{path}: no such file")

    try:
        import numpy as np
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "python"))
        import lorasched
    except ImportError as e:
        die(f"needs h5py, numpy, pandas and matplotlib ({e}); install python3-h5py "
            "python3-pandas python3-matplotlib", EXIT_RUNTIME)

    try:
        res = lorasched.load(path)
    except lorasched.ResultsError as e:
        die(str(e))
    if not res.groups:
        die(f"{path} holds no runs")
    out = pathlib.Path(args.out) if args.out else pathlib.Path("results") / path.stem
    out.mkdir(parents=True, exist_ok=True)

    def tables(name, group):
        """The rows of record table `name` of run `group`: requests of every run are read
        once, iterations and events only for the runs a timeline shows."""
        if name == "requests":
            return res.requests[res.requests["run"] == group]
        return res.table(name, [group])

    runs = []
    for group in res.groups:
        run = Run(res, tables, group)
        runs.append((group, run.label, run))
    written = []

    # ---- latency per output token, CDF ---------------------------------------------------
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for group, label, run in runs:
        r = run.table("requests")
        finish, arrival = r["finish"].to_numpy(), r["arrival"].to_numpy()
        done = (r["status"].isin(["finished", "length_capped"]).to_numpy() & np.isfinite(finish)
                & np.isfinite(arrival))
        if not np.any(done):
            ax.plot([], [], label=f"{label} (nothing completed)")
            continue
        per_token = (finish[done] - arrival[done]) / np.maximum(r["output_tokens"].to_numpy()[done], 1)
        x = np.sort(per_token)
        y = np.arange(1, x.size + 1) / x.size
        ax.step(x, y, where="post", label=label)
    ax.set_xlabel("latency per output token (s)")
    ax.set_ylabel("fraction of completed requests")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(f"{path.name}: latency per output token")
    fig.tight_layout()
    fig.savefig(out / "latency_cdf.png", dpi=120)
    plt.close(fig)
    written.append(out / "latency_cdf.png")

    # ---- mode timeline ---------------------------------------------------------------------
    shown = runs[: max(1, args.max_timelines)]
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 2.6 * len(shown) + 0.6), squeeze=False)
    for (group, label, run), ax in zip(shown, axes[:, 0]):
        it = run.table("iterations")
        ev = run.table("events")
        ax.set_title(label, fontsize="medium")
        ax.set_ylabel("batch size")
        if len(it) == 0:
            ax.text(0.5, 0.5, "no iterations", transform=ax.transAxes, ha="center")
            continue
        start, batch = it["start"].to_numpy(), it["batch_size"].to_numpy()
        for name, colour in (("unmerged", "tab:blue"), ("merged", "tab:orange"), ("mixed", "tab:purple")):
            sel = (it["mode"] == name).to_numpy()
            if np.any(sel) or name != "mixed":
                ax.scatter(start[sel], batch[sel], s=6, color=colour, label=name)
        switch = (ev["kind"].isin(["merge", "unmerge", "adapter_switch"]).to_numpy() if len(ev)
                  else np.array([], bool))
        if len(ev) and np.any(switch):
            ax.vlines(ev["time"].to_numpy()[switch], 0, 1, transform=ax.get_xaxis_transform(),
                      colors="grey", alpha=0.35, linewidth=0.6, label="merge/unmerge/switch")
        ax.set_ylim(0, max(1, int(batch.max())) * 1.1)
        handles, labels = ax.get_legend_handles_labels()
        alpha = it["alpha"].to_numpy() if "alpha" in it.columns else np.array([])
        beta = it["beta"].to_numpy() if "beta" in it.columns else np.array([])
        if np.any(np.isfinite(alpha)) or np.any(np.isfinite(beta)):
            tw = ax.twinx()
            order = np.argsort(start, kind="stable")
            tw.step(start[order], alpha[order], where="post", color="tab:red", linewidth=1,
                    label="alpha")
            tw.step(start[order], beta[order], where="post", color="tab:green", linewidth=1,
                    label="beta")
            tw.set_ylabel("threshold")
            h2, l2 = tw.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        ax.legend(handles, labels, fontsize="x-small", loc="upper right", markerscale=2)
    axes[-1, 0].set_xlabel("virtual time (s)")
    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=120)
    plt.close(fig)
    written.append(out / "timeline.png")

    # ---- throughput vs offered rate (only when the runs differ in rate) -------------------
    rates = [(run_rate(run), label, run) for _, label, run in runs]
    distinct = {r for r, _, _ in rates if r is not None}
    if len(distinct) > 1:
        def by_rate(field):
            series = {}
            for rate, label, run in rates:
                if rate is not None:
                    value = float(run.summary.get(field, np.nan))
                    series.setdefault(label_without_rate(label), []).append((rate, value))
            return series

        for field, ylabel, name, offered, log in (
                ("throughput_rps", "throughput (completed requests/s)", "throughput.png", True,
                 False),
                ("per_token_latency_mean", "mean latency per output token (s)",
                 "latency_vs_rate.png", False, True)):
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for series_name, points in sorted(by_rate(field).items()):
                points.sort()
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                        label=series_name)
            if offered:
                lo, hi = min(distinct), max(distinct)
                ax.plot([lo, hi], [lo, hi], linestyle=":", color="grey", label="offered")
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("offered rate (requests/s)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
            fig.tight_layout()
            fig.savefig(out / name, dpi=120)
            plt.close(fig)
            written.append(out / name)

    # ---- grouped bars (dLoRA Figure 10 layout) ------------------------------------------
    keys = args.group_by.split(",") if args.group_by else report_group_by(runs)
    if keys and len(keys) == 2:
        written += grouped_bars(np, plt, runs, keys, out, path.name)

    for p in written:
        print(p)
    return 0


def coords_of(run):
    """The sweep coordinates of a run."""
    return run.coords


def report_group_by(runs):
    """[report] group_by of the experiment the file came from, if any."""
    try:
        import tomllib
    except ImportError:
        return None
    _, _, run = runs[0]
    try:
        doc = tomllib.loads(run.experiment_toml)
    except Exception:  # not parseable: no grouping
        return None
    keys = doc.get("report", {}).get("group_by")
    return list(keys) if isinstance(keys, list) else None


def ci95(np, values):
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if values.size == 0:
        return np.nan, np.nan
    if values.size == 1:
        return float(values[0]), 0.0
    t = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
    df = values.size - 1
    return float(values.mean()), t.get(df, 1.96 if df > 30 else 2.2) * values.std(ddof=1) / np.sqrt(values.size)


def grouped_bars(np, plt, runs, keys, out, title):
    """Mean and P90 latency per output token, bars per series at each x, 95% CIs."""
    x_key, s_key = keys
    table = {}
    xs, series = [], []
    for _, _, run in runs:
        c = coords_of(run)
        if x_key not in c or s_key not in c:
            return []
        x, s = c[x_key], c[s_key]
        if x not in xs:
            xs.append(x)
        if s not in series:
            series.append(s)
        summ = run.summary
        table.setdefault((x, s), []).append((float(summ.get("per_token_latency_mean", np.nan)),
                                             float(summ.get("per_token_latency_p90", np.nan))))
    try:
        xs.sort(key=float)
    except ValueError:
        pass
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(1, len(series))
    for i, (ax, metric) in enumerate(zip(axes, ("average", "P90"))):
        for j, s in enumerate(series):
            stats = [ci95(np, [v[i] for v in table.get((x, s), [])]) for x in xs]
            pos = np.arange(len(xs)) + (j - (len(series) - 1) / 2) * width
            ax.bar(pos, [m for m, _ in stats], width, yerr=[c for _, c in stats], capsize=3, label=s)
        ax.set_xticks(np.arange(len(xs)))
        ax.set_xticklabels(xs)
        ax.set_xlabel(x_key)
        ax.set_ylabel(f"{metric} latency per output token (s)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{title}: mean over runs, 95% CI")
    fig.tight_layout()
    fig.savefig(out / "groups.png", dpi=120)
    plt.close(fig)
    return [out / "groups.png"]


if __name__ == "__main__":
    sys.exit(main())
