#!/usr/bin/env python3
"""ci/bench_compare.py — compares two Google Benchmark JSON files (r1lab-bench
--benchmark_out=FILE --benchmark_out_format=json): a baseline and a candidate.

    python3 ci/bench_compare.py BASELINE.json CANDIDATE.json [--threshold 0.10]

Benchmarks are matched by name (Google Benchmark's run_name, e.g.
"sampling(b=8,v=151936,backend=cuda)/manual_time"). For each one the time is
real_time in its time_unit (converted to seconds to compare); when the file
holds repetitions, the median aggregate is used, else the mean aggregate, else
the median of the repetitions. The table shows baseline time, candidate time
(each in the unit that suits its size), ratio = candidate / baseline, and the
bytes/s (as GB/s) and FLOP/s (as TFLOP/s) counters when present: any user
counter whose name contains "flop" is taken as FLOP/s, so name it that way
(r1b_counter_rate(state, "flops", flop_per_iteration * iterations)).

A regression is candidate time > baseline time * (1 + threshold). A benchmark
that ran in the baseline but reported an error in the candidate (its check
failed, so it was not timed) counts as a failure too. Benchmarks only in one
file are listed (missing / new) and are not failures.

Exit codes: 0 no regression; 1 at least one regression or new error;
2 bad input (unreadable file, not JSON, not Google Benchmark output).
Python standard library only.
"""

import argparse
import json
import math
import re
import statistics
import sys

SECONDS_PER_UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}

# Keys of a benchmark entry that are not user counters.
STANDARD_KEYS = {
    "name", "family_index", "per_family_instance_index", "run_name", "run_type",
    "repetitions", "repetition_index", "threads", "iterations", "real_time",
    "cpu_time", "time_unit", "aggregate_name", "aggregate_unit", "label",
    "error_occurred", "error_message", "big_o", "rms", "complexity_n",
}


class InputError(Exception):
    """A file that is not usable Google Benchmark JSON output."""


class Result:
    """One benchmark's outcome in one file."""

    def __init__(self, name):
        self.name = name
        self.seconds = None        # real time per iteration, in seconds
        self.bytes_per_second = None
        self.flops_per_second = None
        self.error = None          # error message when the benchmark failed
        self.source = ""           # "median", "mean", "1 run", "median of N runs"


def load(path):
    """Reads a Google Benchmark JSON file: {run_name: Result}."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid JSON: {error}")
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list):
        raise InputError(f"{path}: not Google Benchmark output (no \"benchmarks\" list); "
                         "write it with --benchmark_out=FILE --benchmark_out_format=json")

    # Group entries by run name: iterations (repetitions) and aggregates.
    groups = {}
    for index, entry in enumerate(document["benchmarks"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InputError(f"{path}: benchmarks[{index}] has no name")
        run_name = entry.get("run_name", entry["name"])
        if not isinstance(run_name, str):
            raise InputError(f"{path}: benchmarks[{index}] ({entry['name']}): run_name is not a string")
        group = groups.setdefault(run_name, {"iterations": [], "aggregates": {}})
        if entry.get("run_type") == "aggregate":
            group["aggregates"][entry.get("aggregate_name", "")] = entry
        else:
            group["iterations"].append(entry)

    results = {}
    for run_name, group in groups.items():
        result = Result(run_name)
        errors = [e for e in group["iterations"] if e.get("error_occurred")]
        if errors:
            result.error = str(errors[0].get("error_message", "error")) or "error"
            results[run_name] = result
            continue
        if "median" in group["aggregates"]:
            chosen, result.source = [group["aggregates"]["median"]], "median"
        elif "mean" in group["aggregates"]:
            chosen, result.source = [group["aggregates"]["mean"]], "mean"
        elif group["iterations"]:
            chosen = group["iterations"]
            result.source = "1 run" if len(chosen) == 1 else f"median of {len(chosen)} runs"
        else:
            continue  # only stddev/cv aggregates: nothing to compare
        seconds, bytes_rates, flop_rates = [], [], []
        for entry in chosen:
            unit = entry.get("time_unit", "ns")
            if unit not in SECONDS_PER_UNIT:
                raise InputError(f"{path}: {entry['name']}: unknown time_unit {unit!r}")
            real_time = entry.get("real_time")
            if not isinstance(real_time, (int, float)) or isinstance(real_time, bool) \
                    or not math.isfinite(real_time) or real_time < 0:
                raise InputError(f"{path}: {entry['name']}: real_time is missing or not a number")
            seconds.append(real_time * SECONDS_PER_UNIT[unit])
            bytes_rate = entry.get("bytes_per_second")
            if isinstance(bytes_rate, (int, float)):
                bytes_rates.append(float(bytes_rate))
            for key, value in entry.items():
                if key not in STANDARD_KEYS and "flop" in key.lower() \
                        and isinstance(value, (int, float)):
                    flop_rates.append(float(value))
                    break
        result.seconds = statistics.median(seconds)
        result.bytes_per_second = statistics.median(bytes_rates) if bytes_rates else None
        result.flops_per_second = statistics.median(flop_rates) if flop_rates else None
        results[run_name] = result
    return results


def format_time(seconds):
    """Seconds in the largest unit that keeps the value >= 1: '767.3 us'."""
    if seconds is None:
        return "-"
    for unit in ("s", "ms", "us", "ns"):
        if seconds >= SECONDS_PER_UNIT[unit] or unit == "ns":
            return f"{seconds / SECONDS_PER_UNIT[unit]:.4g} {unit}"
    return "-"


def format_rate(value, scale, digits=4):
    return "-" if value is None else f"{value / scale:.{digits}g}"


def format_pair(baseline, candidate, scale):
    """'41.1 -> 40.2' (baseline -> candidate) for a rate counter."""
    if baseline is None and candidate is None:
        return ""
    return f"{format_rate(baseline, scale)} -> {format_rate(candidate, scale)}"


def print_table(rows, headers):
    widths = [max(len(str(row[i])) for row in rows + [headers]) for i in range(len(headers))]
    line = "  ".join(f"{h:<{widths[i]}}" for i, h in enumerate(headers))
    print(line.rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        cells = [f"{row[0]:<{widths[0]}}"] + \
                [f"{str(c):>{widths[i + 1]}}" for i, c in enumerate(row[1:-1])] + [str(row[-1])]
        print("  ".join(cells).rstrip())


def compare(baseline, candidate, threshold, name_filter=None):
    """Prints the comparison; returns the number of failures."""
    def selected(name):
        return name_filter is None or re.search(name_filter, name) is not None

    common = [n for n in baseline if n in candidate and selected(n)]
    missing = sorted(n for n in baseline if n not in candidate and selected(n))
    new = sorted(n for n in candidate if n not in baseline and selected(n))

    show_bytes = any(r.bytes_per_second is not None
                     for n in common for r in (baseline[n], candidate[n]))
    show_flops = any(r.flops_per_second is not None
                     for n in common for r in (baseline[n], candidate[n]))
    headers = ["benchmark", "baseline", "candidate", "ratio"]
    if show_bytes:
        headers.append("GB/s (base -> cand)")
    if show_flops:
        headers.append("TFLOP/s (base -> cand)")
    headers.append("status")

    rows, regressions, new_errors, improvements = [], [], [], []
    for name in common:
        base, cand = baseline[name], candidate[name]
        ratio = ""
        if base.error is None and cand.error is None:
            ratio_value = cand.seconds / base.seconds if base.seconds > 0 else math.inf
            ratio = f"{ratio_value:.3f}"
            if cand.seconds > base.seconds * (1.0 + threshold):
                status = f"REGRESSION (+{(ratio_value - 1) * 100:.1f}%)"
                regressions.append(name)
            elif cand.seconds * (1.0 + threshold) < base.seconds:
                status = f"faster ({(ratio_value - 1) * 100:.1f}%)"
                improvements.append(name)
            else:
                status = "ok"
        elif cand.error is not None and base.error is None:
            status = f"ERROR in candidate: {cand.error}"
            new_errors.append(name)
        elif cand.error is not None:
            status = f"error in both: {cand.error}"
        else:
            status = f"fixed (baseline error: {base.error})"
        row = [name,
               "error" if base.error else format_time(base.seconds),
               "error" if cand.error else format_time(cand.seconds),
               ratio]
        if show_bytes:
            row.append(format_pair(base.bytes_per_second, cand.bytes_per_second, 1e9))
        if show_flops:
            row.append(format_pair(base.flops_per_second, cand.flops_per_second, 1e12))
        row.append(status)
        rows.append(row)

    if rows:
        print_table(rows, headers)
    else:
        print("no benchmark appears in both files")
    if missing:
        print(f"\nin the baseline only ({len(missing)}, not a failure):")
        for name in missing:
            print(f"  {name}")
    if new:
        print(f"\nin the candidate only ({len(new)}, not a failure):")
        for name in new:
            error = candidate[name].error
            print(f"  {name}" + (f"  (error: {error})" if error else ""))

    print(f"\n{len(common)} compared, threshold {threshold * 100:.1f}%: "
          f"{len(regressions)} regression(s), {len(new_errors)} new error(s), "
          f"{len(improvements)} faster, {len(missing)} missing, {len(new)} new")
    for name in regressions:
        print(f"regression: {name}")
    for name in new_errors:
        print(f"new error: {name}")
    return len(regressions) + len(new_errors)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Compare two Google Benchmark JSON files (baseline, candidate); "
                    "exit 1 on a regression, 2 on bad input.")
    parser.add_argument("baseline", help="Google Benchmark JSON of the baseline run")
    parser.add_argument("candidate", help="Google Benchmark JSON of the candidate run")
    parser.add_argument("--threshold", type=float, default=0.10,
                        help="allowed slowdown as a fraction: regression when "
                             "candidate > baseline * (1 + threshold); default 0.10")
    parser.add_argument("--filter", default=None,
                        help="only compare benchmarks whose name matches this regex")
    arguments = parser.parse_args(argv)
    if not math.isfinite(arguments.threshold) or arguments.threshold < 0:
        parser.error(f"--threshold must be a finite number >= 0, got {arguments.threshold}")
    if arguments.filter is not None:
        try:
            re.compile(arguments.filter)
        except re.error as error:
            parser.error(f"--filter is not a valid regex: {error}")
    try:
        baseline = load(arguments.baseline)
        candidate = load(arguments.candidate)
    except InputError as error:
        print(f"bench_compare.py: error: {error}", file=sys.stderr)
        return 2
    failures = compare(baseline, candidate, arguments.threshold, arguments.filter)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
