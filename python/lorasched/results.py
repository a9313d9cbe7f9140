"""`load(path)`: a lorasched results file as pandas DataFrames.

The file's layout is docs/results-format.md: `/runs/<group>` per run, with attributes (the
run's provenance and its sweep coordinates as `sweep.<key>`), datasets `requests`,
`iterations`, `events` (and `batches` when logged), and a `summary` group of scalar
attributes. This module reads it with h5py and reshapes it; it knows no field by name
beyond the layout, so fields added to the format appear as columns without a change here.
"""

from __future__ import annotations

import functools
import os
from typing import List

import h5py
import numpy as np
import pandas as pd

FORMAT = "lorasched-results"
FORMAT_VERSION = 1
DATASETS = ("requests", "iterations", "events", "batches")


class ResultsError(ValueError):
    """The file is missing, incomplete (.partial, killed or failed run), not HDF5, not a
    lorasched results file, or of a newer format version. The message names the file."""


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _scalar(value):
    """An HDF5 attribute as a plain Python value (str, int or float)."""
    if isinstance(value, (bytes, str)):
        return _text(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _coordinate(series: pd.Series) -> pd.Series:
    """Sweep coordinates are stored as text: numbers become numbers, true/false booleans."""
    values = series.dropna()
    if len(values) and values.isin(["true", "false"]).all():
        return series.map({"true": True, "false": False})
    try:
        return pd.to_numeric(series)
    except (ValueError, TypeError):
        return series


def _check_file(path: str) -> None:
    if path.endswith(".partial"):
        raise ResultsError(f"{path} is an incomplete run (.partial): the run was killed or "
                           "failed; rerun it (open it with h5py for a post-mortem)")
    if not os.path.exists(path):
        if os.path.exists(path + ".partial"):
            raise ResultsError(f"{path}: no such file, but {path}.partial is there: an "
                               "incomplete run; rerun it")
        raise ResultsError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise ResultsError(f"{path} is not an HDF5 file (expected a lorasched results file)")


class Results:
    """The runs of one results file as DataFrames.

    runs       one row per run, index `run` (the group name, e.g. "007"): label, seed,
               executor, device, version, git_revision, host, plugin.<kind>, ... and one
               column per sweep coordinate (e.g. `variant`, `workload.rate`), typed.
    coords     the names of the sweep-coordinate columns, in the order the file gives them.
    summaries  one row per run: label, the coordinates, seed, then every summary figure.
    requests, iterations, events, batches
               one row per record of every run, a first column `run`; enum fields (status,
               mode, kind) as pandas categoricals of their names. Read on first use.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        _check_file(self.path)
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise ResultsError(f"{self.path}: cannot open the results file: {e}") from None
        with f:
            fmt = _text(f.attrs.get("format", ""))
            if fmt != FORMAT:
                raise ResultsError(f"{self.path} is not a lorasched results file (no root "
                                   f"attribute format = \"{FORMAT}\")")
            version = int(f.attrs.get("format_version", -1))
            if version < 1 or version > FORMAT_VERSION:
                raise ResultsError(f"{self.path} has results format version {version}; this "
                                   f"reader reads version {FORMAT_VERSION}")
            status = _text(f.attrs.get("status", "(none)"))
            if status != "complete":
                error = f": {_text(f.attrs['error'])}" if "error" in f.attrs else ""
                raise ResultsError(f"{self.path} is not a complete results file (status "
                                   f"\"{status}\"{error}): the run was killed or failed; rerun it")
            if "runs" not in f:
                raise ResultsError(f"{self.path}: corrupt results file: no /runs group")
            self.groups: List[str] = sorted(k for k, v in f["runs"].items()
                                            if isinstance(v, h5py.Group))
            rows, coords = [], []
            summaries = []
            for g in self.groups:
                run = f["runs"][g]
                row = {"run": g}
                for key, value in run.attrs.items():
                    if key.startswith("sweep."):
                        name = key[len("sweep."):]
                        if name not in coords:
                            coords.append(name)
                        row[name] = _text(value)
                    else:
                        row[key] = _scalar(value)
                rows.append(row)
                s = run["summary"].attrs if "summary" in run else {}
                summaries.append({"run": g, **{k: _scalar(v) for k, v in s.items()}})
        runs = pd.DataFrame(rows, columns=None).set_index("run") if rows else \
            pd.DataFrame(index=pd.Index([], name="run"))
        for c in coords:
            runs[c] = _coordinate(runs[c])
        self.coords: List[str] = coords
        self.runs: pd.DataFrame = runs
        summary = pd.DataFrame(summaries).set_index("run") if summaries else \
            pd.DataFrame(index=pd.Index([], name="run"))
        front = [c for c in ["label", *coords, "seed"] if c in runs.columns]
        self.summaries: pd.DataFrame = runs[front].join(summary, rsuffix="_summary")

    def table(self, name: str, runs=None) -> pd.DataFrame:
        """Record table `name` ("requests", "iterations", "events" or "batches") of only the
        runs `runs` (group names, e.g. ["003"]; all runs when None), read now: for a few runs
        of a large file. Same columns and categories as the attribute of that name."""
        if runs is None:
            return getattr(self, name)
        wanted = set(runs)
        unknown = wanted - set(self.groups)
        if unknown:
            raise KeyError(f"{self.path} has no run {sorted(unknown)[0]}")
        return self._table(name, [g for g in self.groups if g in wanted])

    def _table(self, name: str, groups=None) -> pd.DataFrame:
        groups = self.groups if groups is None else groups
        arrays, counts = [], []
        with h5py.File(self.path, "r") as f:
            for g in groups:
                run = f["runs"][g]
                if name in run:
                    arrays.append(run[name][()])
                    counts.append(len(arrays[-1]))
                else:
                    counts.append(0)
        if not arrays:
            return pd.DataFrame(columns=["run"])
        dtype = arrays[0].dtype
        # One concatenation of the structured arrays, then one frame: much faster than a frame
        # per run for files with thousands of runs.
        try:
            data = np.concatenate(arrays)
        except (TypeError, ValueError):  # runs written by different versions: align by name
            data = None
        index = {g: i for i, g in enumerate(self.groups)}
        run_codes = np.repeat(np.array([index[g] for g in groups], dtype=np.int64), counts)
        columns = {"run": pd.Categorical.from_codes(run_codes, self.groups)}
        if data is not None:
            for field in dtype.names:
                columns[field] = data[field]
            table = pd.DataFrame(columns)
        else:
            table = pd.concat([pd.DataFrame({fld: a[fld] for fld in a.dtype.names})
                               for a in arrays], ignore_index=True)
            table.insert(0, "run", columns["run"])
        for field in dtype.names:
            mapping = h5py.check_enum_dtype(dtype[field])
            if mapping:
                names = [k for k, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
                table[field] = pd.Categorical.from_codes(table[field].astype(np.int64), names)
        return table

    @functools.cached_property
    def requests(self) -> pd.DataFrame:
        """One row per request of every run (column `run` first)."""
        return self._table("requests")

    @functools.cached_property
    def iterations(self) -> pd.DataFrame:
        """One row per iteration of every replica of every run."""
        return self._table("iterations")

    @functools.cached_property
    def events(self) -> pd.DataFrame:
        """One row per event of every run."""
        return self._table("events")

    @functools.cached_property
    def batches(self) -> pd.DataFrame:
        """One row per request per iteration (runs with [metrics] log_batches = true)."""
        return self._table("batches")

    def __repr__(self):
        return f"<lorasched.Results {self.path}: {len(self.groups)} runs, coords {self.coords}>"


def load(path) -> Results:
    """Opens a complete lorasched results file; raises ResultsError (naming the file) for a
    missing, .partial, incomplete, failed, non-HDF5 or foreign file."""
    return Results(path)
