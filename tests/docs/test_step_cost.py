#!/usr/bin/env python3
"""scripts/step_cost.py's table on made-up counts and timings whose rows are worked out by hand
here: the division by iterations, the time per instruction taken from BM_OneReplica, what is
left per line, the step time the 50% target allows, and what BM_Fleet's short per-adapter
arrays save. Also one bad input (a profile without the first-level counts): one line on
stderr, exit status 2. Standard library only."""
import json
import pathlib
import subprocess
import sys
import tempfile

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "step_cost.py"


def timed_point(name, rate, its_per_request):
    # load() (scripts/bench_simulation.py) takes requests/cpu_s as the loop rate, and
    # iterations per request from the two wall-clock rates' ratio.
    return {"name": name, "run_type": "iteration", "requests/cpu_s": rate,
            "requests/s": 1000.0, "iterations/s": 1000.0 * its_per_request}


def counted(family, replicas, its, ir, cluster, l1, rd, wr):
    return {"family": family, "replicas": replicas, "iterations": its, "instructions": ir,
            "cluster_instructions": cluster, "l1_lines": l1, "lines_read": rd,
            "lines_written": wr}


def main():
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        profile = {"context": {"valgrind": "valgrind-test", "cache": "c", "date": "d"},
                   "points": [
                       # 5,000 instructions per iteration, 300 of them the cluster's, 2 lines
                       counted("BM_OneReplica", 1, 1000, 5_000_000, 300_000, 2_000, 0, 0),
                       counted("BM_Scale", 1, 1000, 5_500_000, 300_000, 2_000, 0, 0),
                       # 6,000 per iteration, 1,000 cluster, 100 + 50 + 10 lines
                       counted("BM_Scale", 1000, 2000, 12_000_000, 2_000_000, 200_000,
                               100_000, 20_000),
                       # the fleet pair: 6,000 and 5,500 instructions, 60 and 50 lines
                       counted("BM_Fleet", 10000, 1000, 6_000_000, 1_000_000, 100_000, 50_000,
                               10_000),
                       counted("BM_Fleet", 10, 1000, 5_500_000, 1_000_000, 80_000, 40_000,
                               10_000)]}
        timed = {"context": {"date": "when", "host_name": "here"}, "benchmarks": [
            # 40,000 requests/s x 50 iterations per request: 2 M iterations/s, 500 ns each,
            # so 0.1 ns per instruction (5,000 per iteration)
            timed_point("BM_OneReplica/requests_per_replica:40/iterations:400/real_time",
                        40_000, 50),
            timed_point("BM_Scale/replicas:1/requests_per_replica:4000/iterations:1/real_time",
                        40_000, 40),
            # 16,000 x 62.5: 1 M iterations/s, 1,000 ns each; 6,000 instructions take 600 ns,
            # 400 left over 60 lines: 6.7 per line
            timed_point("BM_Scale/replicas:1000/requests_per_replica:40/iterations:1/real_time",
                        16_000, 62.5),
            # 1,000 ns and 800 ns per iteration; at 0.1 ns per instruction 400 and 250 left
            timed_point("BM_Fleet/replicas:1000/adapters:10000/iterations:1/real_time",
                        16_000, 62.5),
            timed_point("BM_Fleet/replicas:1000/adapters:10/iterations:1/real_time",
                        20_000, 62.5)]}
        (tmp / "p.json").write_text(json.dumps(profile))
        (tmp / "t.json").write_text(json.dumps(timed))
        out = subprocess.run([sys.executable, str(SCRIPT), "table", str(tmp / "p.json"),
                              str(tmp / "t.json")], capture_output=True, text=True)
        if out.returncode != 0:
            failures.append(f"table failed: {out.stderr}")
        expected = [
            "| 1 x 10 (BM_OneReplica, 40 requests, 400 runs) | 5,000 | 1.00 | 300 | 2.0 "
            "| 0.0 (0.0 + 0.0) | 500 | 500 | 0 | - |",
            "| 1,000 x 10,000 | 6,000 | 1.20 | 1,000 | 100.0 | 60.0 (50.0 + 10.0) | 1,000 "
            "| 600 | 400 | 6.7 |",
            # 50% of 40,000 requests/s at 62.5 iterations per request: 1.25 M iterations/s,
            # 800 ns, 20% less than 1,000
            "its iteration may take 800 ns: 20% less than the 1,000 ns measured.",
            "(100 ps per instruction",
            # 10 lines, 500 instructions, 200 ns; 150 ns of memory over 10 lines
            "10.0 fewer lines from beyond 1 MiB and 500 fewer instructions per iteration, 200 ns "
            "less per iteration, 150 ns of it memory (15 ns per line).",
        ]
        for e in expected:
            if e not in out.stdout:
                failures.append(f"missing from the table: {e}\n--- output:\n{out.stdout}")

        del profile["points"][0]["l1_lines"]
        (tmp / "bad.json").write_text(json.dumps(profile))
        bad = subprocess.run([sys.executable, str(SCRIPT), "table", str(tmp / "bad.json"),
                              str(tmp / "t.json")], capture_output=True, text=True)
        lines = bad.stderr.strip().splitlines()
        if bad.returncode != 2 or len(lines) != 1 or "l1_lines" not in lines[0]:
            failures.append(f"bad profile: exit {bad.returncode}, stderr {bad.stderr!r}")
    for f in failures:
        print(f"FAIL: {f}")
    print("ok" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
