#!/usr/bin/env python3
"""Checks a lorasched results file with h5py against docs/results-format.md (the field lists
and enums are read from its tables): root
attributes, run groups and their attributes, the compound field names (in order) of every
dataset, the enums, the summary attributes and row counts.

usage: check_results_h5py.py FILE.h5 RUNS REQUESTS_PER_RUN
Prints "OK" and exits 0, or prints what is wrong and exits 1.
"""

import pathlib
import re
import sys

import h5py
import numpy as np

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "results-format.md"


def doc_tables():
    """{heading: [table rows as lists of cells]} of docs/results-format.md (outside code fences)."""
    tables, heading, in_table, fence = {}, "", False, False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        if fence:
            continue
        if line.startswith("#"):
            heading, in_table = line, False
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in re.split(r"\|(?=(?:[^`]*`[^`]*`)*[^`]*$)", line)[1:-1]]
        if not in_table:
            tables.setdefault(heading, []).append([cells])
            in_table = True
        elif not cells[0].startswith("---"):
            tables[heading][-1].append(cells)
    return tables


def documented_fields(tables, prefix):
    """Field names of the 'field' table under the heading starting with `prefix`, in order."""
    for heading, ts in tables.items():
        if heading.startswith(prefix):
            for t in ts:
                if t[0][0] == "field":
                    return [n for row in t[1:] for n in re.findall(r"`([^`]+)`", row[0])]
    raise SystemExit(f"{DOC}: no field table under {prefix}")


def documented_enum(tables, name):
    for ts in tables.values():
        for t in ts:
            if t[0][0] == "value" and len(t[0]) > 1 and t[0][1] == f"`{name}`":
                return {row[1].strip("`"): int(row[0]) for row in t[1:]}
    raise SystemExit(f"{DOC}: no table for the enum {name}")


# The schema as docs/results-format.md gives it (tests/unit/metrics/test_schema.cpp checks the
# doc against the C++ field tables, so this is the code's schema too).
TABLES = doc_tables()
REQUESTS = documented_fields(TABLES, "## `requests`")
ITERATIONS = documented_fields(TABLES, "## `iterations`")
EVENTS = documented_fields(TABLES, "## `events`")
BATCHES = documented_fields(TABLES, "## `batches`")
SUMMARY = documented_fields(TABLES, "## `summary`")
RUN_ATTRS = ["label", "experiment_path", "experiment_toml", "version", "git_revision", "seed",
             "executor", "device", "host", "plugin.scheduler", "plugin.threshold",
             "plugin.dispatcher", "plugin.migration"]
STATUS = documented_enum(TABLES, "status")
MODE = documented_enum(TABLES, "mode")
KINDS = [k for k, _ in sorted(documented_enum(TABLES, "kind").items(), key=lambda kv: kv[1])]

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
            # A fused switch ("adapter_switch") merges one adapter and unmerges another.
            fused = int(np.count_nonzero(ev["kind"] == kinds["adapter_switch"]))
            check(int(summ["merges"]) == int(np.count_nonzero(ev["kind"] == kinds["merge"])) + fused,
                  f"{name}: summary merges")
            check(int(summ["unmerges"]) ==
                  int(np.count_nonzero(ev["kind"] == kinds["unmerge"])) + fused,
                  f"{name}: summary unmerges")
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
