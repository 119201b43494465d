#!/usr/bin/env python3
"""ci/test_bench_compare.py — self-test of ci/bench_compare.py: runs it as a
command on crafted Google Benchmark JSON files in a temporary folder and
checks its exit codes (0 no regression, 1 regression, 2 bad input) and what
it prints. Python standard library only.

    python3 ci/test_bench_compare.py
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_compare.py")


def iteration(name, real_time, unit="us", **counters):
    entry = {"name": name, "run_name": name, "run_type": "iteration",
             "repetitions": 1, "repetition_index": 0, "threads": 1,
             "iterations": 100, "real_time": real_time, "cpu_time": real_time,
             "time_unit": unit}
    entry.update(counters)
    return entry


def aggregate(name, kind, real_time, unit="us", **counters):
    entry = {"name": f"{name}_{kind}", "run_name": name, "run_type": "aggregate",
             "repetitions": 3, "threads": 1, "aggregate_name": kind,
             "aggregate_unit": "time", "iterations": 3, "real_time": real_time,
             "cpu_time": real_time, "time_unit": unit}
    entry.update(counters)
    return entry


def errored(name, message):
    entry = iteration(name, 0.0)
    entry.update({"error_occurred": True, "error_message": message})
    return entry


def document(benchmarks):
    return {"context": {"date": "2025-01-01T00:00:00+00:00", "executable": "r1lab-bench",
                        "r1lab_version": "0.1.0"},
            "benchmarks": benchmarks}


# Baseline: "copy" ran with 3 repetitions; its mean (130 us) is pulled up by
# one slow run, its median is 100 us; the candidate must be compared with the
# median. "gemm" carries FLOP/s, "old" exists only here.
BASELINE = document([
    iteration("copy/real_time", 100.0, bytes_per_second=4.0e10),
    iteration("copy/real_time", 190.0, bytes_per_second=2.1e10),
    iteration("copy/real_time", 99.0, bytes_per_second=4.1e10),
    aggregate("copy/real_time", "mean", 130.0, bytes_per_second=3.4e10),
    aggregate("copy/real_time", "median", 100.0, bytes_per_second=4.0e10),
    aggregate("copy/real_time", "stddev", 50.0, bytes_per_second=1e10),
    iteration("gemm(m=64)/manual_time", 2.0, unit="ms", flops=5.0e12),
    iteration("old/real_time", 1.0),
])


def candidate(copy_us, gemm_ns=2.0e6, gemm_entry=None):
    """Candidate with copy at `copy_us` microseconds and gemm given in ns."""
    return document([
        iteration("copy/real_time", copy_us, bytes_per_second=4.0e10 * 100.0 / copy_us),
        gemm_entry or iteration("gemm(m=64)/manual_time", gemm_ns, unit="ns", flops=5.0e12),
        iteration("new/real_time", 3.0),
    ])


class BenchCompareTest(unittest.TestCase):
    def setUp(self):
        self.folder = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.folder.cleanup()

    def write(self, name, content):
        path = os.path.join(self.folder.name, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(content if isinstance(content, str) else json.dumps(content))
        return path

    def run_compare(self, baseline, candidate_file, *extra):
        completed = subprocess.run(
            [sys.executable, SCRIPT, baseline, candidate_file, *extra],
            capture_output=True, text=True, check=False)
        return completed.returncode, completed.stdout, completed.stderr

    def test_no_regression_exits_0(self):
        # copy 105 us vs median 100 us: +5% is inside the 10% threshold (the
        # mean, 130 us, would call it faster); gemm 2e6 ns == 2 ms.
        code, out, err = self.run_compare(self.write("base.json", BASELINE),
                                          self.write("cand.json", candidate(105.0)))
        self.assertEqual(code, 0, out + err)
        self.assertIn("1.050", out)                       # ratio against the median
        self.assertIn("gemm(m=64)/manual_time", out)
        self.assertIn("1.000", out)                       # ms vs ns converted
        self.assertIn("TFLOP/s", out)
        self.assertIn("GB/s", out)
        self.assertIn("old/real_time", out)               # missing: listed
        self.assertIn("new/real_time", out)               # new: listed
        self.assertNotIn("REGRESSION", out)

    def test_regression_exits_1(self):
        code, out, err = self.run_compare(self.write("base.json", BASELINE),
                                          self.write("cand.json", candidate(125.0)))
        self.assertEqual(code, 1, out + err)
        self.assertIn("REGRESSION", out)
        self.assertIn("regression: copy/real_time", out)

    def test_threshold_option(self):
        base = self.write("base.json", BASELINE)
        cand = self.write("cand.json", candidate(125.0))
        code, out, err = self.run_compare(base, cand, "--threshold", "0.30")
        self.assertEqual(code, 0, out + err)
        code, out, err = self.run_compare(base, self.write("c2.json", candidate(105.0)),
                                          "--threshold", "0.01")
        self.assertEqual(code, 1, out + err)

    def test_regression_across_units(self):
        # gemm: 2 ms baseline, 2.5e6 ns candidate = 2.5 ms: +25%.
        code, out, err = self.run_compare(self.write("base.json", BASELINE),
                                          self.write("cand.json", candidate(100.0, 2.5e6)))
        self.assertEqual(code, 1, out + err)
        self.assertIn("regression: gemm(m=64)/manual_time", out)

    def test_error_in_candidate_exits_1(self):
        gemm = errored("gemm(m=64)/manual_time", "check failed: relative L2 3e-2 > 1e-2")
        code, out, err = self.run_compare(self.write("base.json", BASELINE),
                                          self.write("cand.json", candidate(100.0, gemm_entry=gemm)))
        self.assertEqual(code, 1, out + err)
        self.assertIn("ERROR in candidate", out)

    def test_malformed_exits_2(self):
        base = self.write("base.json", BASELINE)
        bad_files = {
            "truncated.json": '{"benchmarks": [',
            "no_benchmarks.json": {"context": {}},
            "not_object.json": [1, 2, 3],
            "bad_time.json": document([iteration("copy/real_time", "fast")]),
            "bad_unit.json": document([iteration("copy/real_time", 1.0, unit="fortnights")]),
        }
        for name, content in bad_files.items():
            code, out, err = self.run_compare(base, self.write(name, content))
            self.assertEqual(code, 2, f"{name}: {out}{err}")
            self.assertIn("bench_compare.py: error:", err, name)
        code, out, err = self.run_compare(base, os.path.join(self.folder.name, "absent.json"))
        self.assertEqual(code, 2, out + err)
        self.assertIn("cannot read", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
