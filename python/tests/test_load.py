"""lorasched.load() against the same file read with h5py directly (docs/results-format.md)."""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np
import pandas as pd

import lorasched

HERE = pathlib.Path(__file__).resolve().parent

# Two schedulers x two rates on the cost model, 30 requests each, batches logged.
EXPERIMENT = """[run]
name = "py"
seed = 3
output = "out/py.h5"
[adapters]
count = 4
ranks = [4, 8]
[workload]
arrival = "poisson"
rate = 20.0
num_requests = 30
popularity = { kind = "zipf", s = 1.1 }
prompt = { kind = "uniform", min = 8, max = 32 }
output = { kind = "uniform", min = 2, max = 12 }
[engine]
max_batch_size = 8
[cluster]
executor = "costmodel"
costmodel = "dlora-artifact"
[scheduler]
plugin = "dlora"
[threshold]
plugin = "dlora-adaptive"
[metrics]
log_batches = true
[sweep]
"workload.rate" = [20.0, 80.5]
"scheduler.plugin" = ["dlora", "unmerged-fcfs"]
"""


def run_lorasched(args, cwd):
    env = dict(os.environ)
    env.pop("LORASCHED_PLUGIN_PATH", None)
    return subprocess.run([os.environ["LORASCHED_BIN"], *args], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class LoadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = pathlib.Path(tempfile.mkdtemp(prefix="lorasched-py-"))
        (cls.dir / "exp.toml").write_text(EXPERIMENT)
        r = run_lorasched(["run", "-q", "exp.toml"], cls.dir)
        if r.returncode != 0:
            raise RuntimeError(f"lorasched run failed: {r.stderr}")
        cls.path = cls.dir / "out/py.h5"
        cls.res = lorasched.load(cls.path)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_runs_have_typed_sweep_coordinates(self):
        runs = self.res.runs
        self.assertEqual(list(runs.index), ["000", "001", "002", "003"])
        self.assertEqual(sorted(self.res.coords), ["scheduler.plugin", "workload.rate"])  # file order
        self.assertEqual(runs["workload.rate"].dtype, np.float64)
        self.assertEqual(sorted(set(runs["workload.rate"])), [20.0, 80.5])
        self.assertEqual(sorted(set(runs["scheduler.plugin"])), ["dlora", "unmerged-fcfs"])
        with h5py.File(self.path, "r") as f:
            for g in runs.index:
                attrs = f["runs"][g].attrs
                self.assertEqual(runs.loc[g, "label"], attrs["label"])
                self.assertEqual(runs.loc[g, "seed"], int(attrs["seed"]))
                self.assertEqual(runs.loc[g, "workload.rate"], float(attrs["sweep.workload.rate"]))
                self.assertEqual(runs.loc[g, "plugin.scheduler"], attrs["plugin.scheduler"])

    def test_summaries_joined_to_coordinates(self):
        s = self.res.summaries
        self.assertEqual(list(s.columns[:4]), ["label", *self.res.coords, "seed"])
        with h5py.File(self.path, "r") as f:
            for g in s.index:
                attrs = f["runs"][g]["summary"].attrs
                self.assertEqual(set(attrs.keys()) - set(s.columns), set())
                for k, v in attrs.items():
                    if np.isnan(v):
                        self.assertTrue(np.isnan(s.loc[g, k]), k)
                    else:
                        self.assertEqual(s.loc[g, k], v, k)
        # The intended use: a group-by over a coordinate.
        means = s.groupby("scheduler.plugin")["finished"].sum()
        self.assertEqual(int(means.sum()), 4 * 30)

    def test_record_tables_match_h5py_row_for_row(self):
        with h5py.File(self.path, "r") as f:
            for name in ("requests", "iterations", "events", "batches"):
                table = getattr(self.res, name)
                self.assertEqual(table.columns[0], "run")
                expected = [(g, f["runs"][g][name][()]) for g in sorted(f["runs"])]
                self.assertEqual(len(table), sum(len(a) for _, a in expected), name)
                self.assertEqual(list(table.columns[1:]), list(expected[0][1].dtype.names), name)
                offset = 0
                for g, a in expected:
                    part = table.iloc[offset:offset + len(a)]
                    offset += len(a)
                    self.assertTrue((part["run"] == g).all(), name)
                    for field in a.dtype.names:
                        mapping = h5py.check_enum_dtype(a.dtype[field])
                        got = part[field]
                        if mapping:  # names in the frame, values in the file
                            back = {v: k for k, v in mapping.items()}
                            np.testing.assert_array_equal(got.astype(str).to_numpy(),
                                                          [back[v] for v in a[field]])
                        else:
                            np.testing.assert_array_equal(got.to_numpy(), a[field],
                                                          err_msg=f"{name}.{field} of {g}")

    def test_table_of_some_runs_equals_the_rows_of_the_whole_table(self):
        some = [self.res.groups[1], self.res.groups[3]]
        for name in ("requests", "iterations", "events"):
            whole = getattr(self.res, name)
            want = whole[whole["run"].isin(some)].reset_index(drop=True)
            got = self.res.table(name, some)
            pd.testing.assert_frame_equal(got, want, check_dtype=True)
        with self.assertRaises(KeyError):
            self.res.table("requests", ["999"])

    def test_enums_are_categoricals_of_their_names(self):
        req = self.res.requests
        self.assertIsInstance(req["status"].dtype, pd.CategoricalDtype)
        self.assertEqual(list(req["status"].cat.categories),
                         ["unfinished", "finished", "ignored", "length_capped"])
        self.assertTrue((req["status"] == "finished").all())
        self.assertEqual(list(self.res.iterations["mode"].cat.categories)[:2],
                         ["unmerged", "merged"])
        self.assertIn("merge", list(self.res.events["kind"].cat.categories))

    def test_join_requests_to_runs(self):
        req = self.res.requests.merge(self.res.runs[self.res.coords], left_on="run",
                                      right_index=True)
        per_point = req.groupby(["scheduler.plugin", "workload.rate"]).size()
        self.assertEqual(per_point.tolist(), [30, 30, 30, 30])


class RefusesBadFilesTest(unittest.TestCase):
    def setUp(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="lorasched-py-bad-"))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def expect_error(self, path, words):
        with self.assertRaises(lorasched.ResultsError) as cm:
            lorasched.load(path)
        for w in words:
            self.assertIn(w, str(cm.exception))

    def test_missing_partial_text_foreign_and_incomplete(self):
        self.expect_error(self.dir / "none.h5", ["none.h5", "no such file"])
        (self.dir / "x.h5.partial").write_bytes(b"")
        self.expect_error(self.dir / "x.h5.partial", ["x.h5.partial", ".partial", "rerun"])
        self.expect_error(self.dir / "x.h5", ["x.h5.partial is there"])
        (self.dir / "notes.h5").write_text("text\n")
        self.expect_error(self.dir / "notes.h5", ["notes.h5", "not an HDF5 file"])
        with h5py.File(self.dir / "other.h5", "w") as f:
            f.attrs["format"] = "something-else"
        self.expect_error(self.dir / "other.h5", ["other.h5", "not a lorasched results file"])
        with h5py.File(self.dir / "failed.h5", "w") as f:
            f.attrs["format"] = "lorasched-results"
            f.attrs["format_version"] = 1
            f.attrs["status"] = "failed"
            f.attrs["error"] = "plugin crashed"
            f.create_group("runs")
        self.expect_error(self.dir / "failed.h5", ["failed.h5", "\"failed\"", "plugin crashed"])
        with h5py.File(self.dir / "newer.h5", "w") as f:
            f.attrs["format"] = "lorasched-results"
            f.attrs["format_version"] = 99
            f.attrs["status"] = "complete"
        self.expect_error(self.dir / "newer.h5", ["newer.h5", "version 99"])


class PipInstallTest(unittest.TestCase):
    def test_installs_with_pip_and_imports(self):
        try:
            import pip  # noqa: F401
        except ImportError:
            self.skipTest("pip not available")
        work = pathlib.Path(tempfile.mkdtemp(prefix="lorasched-pip-"))
        try:
            # Built from a copy: pip writes build/ and *.egg-info next to pyproject.toml.
            src, target = work / "src", work / "site"
            src.mkdir()
            for name in ("pyproject.toml", "README.md"):
                shutil.copy(HERE.parent / name, src / name)
            shutil.copytree(HERE.parent / "lorasched", src / "lorasched",
                            ignore=shutil.ignore_patterns("__pycache__"))
            r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                                "--no-build-isolation", "--no-index", "--target", str(target),
                                str(src)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=work, env={**os.environ, "PIP_NO_CACHE_DIR": "1"})
            if r.returncode != 0 and "No module named 'setuptools'" in r.stdout:
                self.skipTest("setuptools not available")
            self.assertEqual(r.returncode, 0, r.stdout)
            check = subprocess.run(
                [sys.executable, "-c", "import lorasched; print(lorasched.__file__)"],
                cwd=work, env={**os.environ, "PYTHONPATH": str(target)},
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.assertEqual(check.returncode, 0, check.stdout)
            self.assertIn(str(target), check.stdout)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
