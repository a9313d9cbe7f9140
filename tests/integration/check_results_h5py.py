#!/usr/bin/env python3
"""Checks a lorasched results file with h5py against docs/results-format.md: root
attributes, run groups and their attributes, the compound field names (in order) of every
dataset, the enums, the summary attributes and row counts.

usage: check_results_h5py.py FILE.h5 RUNS REQUESTS_PER_RUN
Prints "OK" and exits 0, or prints what is wrong and exits 1.
"""

import sys

import h5py
import numpy as np

REQUESTS = ["id", "adapter", "replica", "arrival", "first_scheduled", "first_token", "finish",
            "prompt_tokens", "output_tokens", "queueing_delay", "exec_time", "migrations",
            "preemptions", "status"]
ITERATIONS = ["replica", "iteration", "start", "switch_time", "duration", "mode", "merged_adapter",
              "batch_size", "prefill_tokens", "decode_tokens", "distinct_adapters", "queued",
              "kv_blocks_used", "alpha", "beta", "decision_wall_us"]
EVENTS = ["time", "replica", "kind", "adapter", "request", "duration", "bytes", "other_replica",
          "value", "value2"]
BATCHES = ["iteration", "replica", "request", "position"]
SUMMARY = ["requests", "finished", "ignored", "unfinished", "makespan", "throughput_rps",
           "throughput_tokens", "latency_mean", "latency_p50", "latency_p90", "latency_p99",
           "per_token_latency_mean", "per_token_latency_p90", "ttft_mean", "ttft_p90",
           "queueing_mean", "queueing_p90", "iterations", "merged_iterations", "merges", "unmerges",
           "adapter_loads", "adapter_evictions", "preemptions", "migrations", "threshold_changes",
           "switch_time_total", "wall_seconds"]
RUN_ATTRS = ["label", "experiment_path", "experiment_toml", "version", "git_revision", "seed",
             "executor", "device", "host", "plugin.scheduler", "plugin.threshold",
             "plugin.dispatcher", "plugin.migration"]
STATUS = {"unfinished": 0, "finished": 1, "ignored": 2, "length_capped": 3}
MODE = {"unmerged": 0, "merged": 1, "mixed": 2}
KINDS = ["merge", "unmerge", "adapter_load", "adapter_evict", "preempt_swap", "preempt_recompute",
         "swap_in", "migrate_request", "migrate_adapter", "threshold_change", "migration_decision",
         "warning", "request_ignored", "relief"]

problems = []


def check(cond, what):
    if not cond:
        problems.append(what)


def s(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def main():
    path, runs_expected, requests_expected = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with h5py.File(path, "r") as f:
        check(s(f.attrs.get("format")) == "lorasched-results", "root format")
        check(int(f.attrs.get("format_version", -1)) == 1, "root format_version")
        check(s(f.attrs.get("status")) == "complete", "root status")
        check("error" not in f.attrs, "root error on a complete file")
        runs = sorted(f["runs"].keys())
        check(runs == [f"{i:03d}" for i in range(runs_expected)], f"run groups {runs}")
        for name in runs:
            run = f["runs"][name]
            for a in RUN_ATTRS:
                check(a in run.attrs, f"{name}: attribute {a}")
            check(list(run.attrs.keys())[: len(RUN_ATTRS)] == RUN_ATTRS,
                  f"{name}: attribute order {list(run.attrs.keys())}")
            for ds, fields in (("requests", REQUESTS), ("iterations", ITERATIONS),
                               ("events", EVENTS), ("batches", BATCHES)):
                check(ds in run, f"{name}: dataset {ds}")
                if ds in run:
                    got = list(run[ds].dtype.names)
                    check(got == fields, f"{name}/{ds}: fields {got}")
                    check(run[ds].ndim == 1, f"{name}/{ds}: not 1-D")
            req = run["requests"][:]
            check(len(req) == requests_expected, f"{name}: {len(req)} requests")
            check(h5py.check_enum_dtype(req.dtype["status"]) == STATUS, f"{name}: status enum")
            check(np.all(req["status"] == 1), f"{name}: not every request finished")
            it = run["iterations"][:]
            check(h5py.check_enum_dtype(it.dtype["mode"]) == MODE, f"{name}: mode enum")
            ev = run["events"][:]
            kinds = h5py.check_enum_dtype(ev.dtype["kind"])
            check(kinds is not None and all(kinds.get(k) == i for i, k in enumerate(KINDS)),
                  f"{name}: kind enum {kinds}")
            b = run["batches"][:]
            check(len(b) == int(it["batch_size"].sum()), f"{name}: batches rows")
            summ = run["summary"].attrs
            for k in SUMMARY:
                check(k in summ, f"{name}: summary {k}")
            check(int(summ["requests"]) == len(req), f"{name}: summary requests")
            check(int(summ["iterations"]) == len(it), f"{name}: summary iterations")
            check(int(summ["merges"]) == int(np.count_nonzero(ev["kind"] == kinds["merge"])),
                  f"{name}: summary merges")
            done = np.isin(req["status"], [1, 3]) & np.isfinite(req["finish"])
            lat = req["finish"][done] - req["arrival"][done]
            per_tok = lat / np.maximum(req["output_tokens"][done], 1)
            check(abs(float(summ["per_token_latency_mean"]) - per_tok.mean()) < 1e-9,
                  f"{name}: per_token_latency_mean")
            check(abs(float(summ["latency_p90"]) - np.percentile(lat, 90)) < 1e-9,
                  f"{name}: latency_p90 vs numpy.percentile")
    if problems:
        print("\n".join(problems))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
