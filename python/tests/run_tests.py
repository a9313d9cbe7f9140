#!/usr/bin/env python3
"""Runs the tests of the lorasched Python package (ctest: python.lorasched).

Exits 77 (ctest: skipped) with the reason when h5py, numpy or pandas is missing or no
lorasched binary is given (LORASCHED_BIN); scripts/install-deps installs the packages, so in
CI they run. Uses unittest (pytest is not guaranteed).
"""
import os
import pathlib
import sys
import unittest

SKIP = 77


def main():
    missing = []
    for module in ("h5py", "numpy", "pandas"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        print(f"SKIP: python3 lacks {', '.join(missing)} (scripts/install-deps installs "
              "python3-h5py python3-numpy python3-pandas)")
        return SKIP
    if not os.environ.get("LORASCHED_BIN"):
        print("SKIP: LORASCHED_BIN (the lorasched binary that writes the test files) not set")
        return SKIP
    here = pathlib.Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parent))  # the package from the source tree
    suite = unittest.defaultTestLoader.discover(str(here), pattern="test_*.py",
                                                top_level_dir=str(here))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
