"""Read lorasched results files (docs/results-format.md) into pandas DataFrames.

    import lorasched
    res = lorasched.load("results/study.h5")
    res.summaries.groupby("variant")["per_token_latency_mean"].mean()
"""

from .results import ResultsError, Results, load

__all__ = ["load", "Results", "ResultsError"]
__version__ = "0.1.0"
