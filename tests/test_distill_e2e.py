#!/usr/bin/env python3
"""tests/test_distill_e2e.py: `r1lab distill` against tests/distill_server.py
over real HTTP on 127.0.0.1 (Python standard library only).

    python3 tests/test_distill_e2e.py BUILD/r1lab [--prompts N] [--case NAME]

Cases: answers (every reasoning variant, plain and --stream, byte-for-byte
input prefix), faults (every fault: retried or recorded as the issue lists),
payment (402 stops cleanly, resumable), keys (never in a file written),
concurrency (server's max in flight <= --concurrency), timeouts (trickle,
stalled stream, Retry-After), sigint (graceful stop + resume), keep_correct
(skipped while the answer component is absent), sort_sft, command_line
(sft-data, sort and option parsing without a server), exactly_once
(N prompts, 30% faults, 2 endpoints one going down, SIGKILL at random
moments, restarts until done; then --n 4). Exit 0 on success, 1 on failure.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = "sk-r1lab-test-9f8e7d6c5b4a"
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print("  FAIL: " + message, flush=True)
    return condition


class Server:
    def __init__(self, directory, endpoints=1, seed=1):
        self.port_file = os.path.join(directory, "ports-%d.json" % time.time_ns())
        self.process = subprocess.Popen([sys.executable, os.path.join(HERE, "distill_server.py"),
                                         "--endpoints", str(endpoints), "--port-file", self.port_file,
                                         "--seed", str(seed)], stdout=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.exists(self.port_file):
                break
            time.sleep(0.05)
        with open(self.port_file) as handle:
            ports = json.load(handle)
        self.urls = ["http://127.0.0.1:%d/v1" % p for p in ports["endpoints"]]
        self.control_url = "http://127.0.0.1:%d" % ports["control"]

    def control(self, **settings):
        request = urllib.request.Request(self.control_url + "/control", data=json.dumps(settings).encode(), method="POST")
        urllib.request.urlopen(request, timeout=10).read()

    def counters(self):
        return json.loads(urllib.request.urlopen(self.control_url + "/counters", timeout=10).read())

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def write_dataset(path, count, extra=lambda k: {}, start=1):
    with open(path, "w", encoding="utf-8") as handle:
        for k in range(start, start + count):
            record = {"id": k, "question": "Q%d: what is 3 x %d + 1?" % (k, k),
                      "answer": "3*%d+1 = %d\n#### %d" % (k, 3 * k + 1, 3 * k + 1), "w": 1.250, "u": "\u00e9\\n"}
            record.update(extra(k))
            handle.write(json.dumps(record, ensure_ascii=(k % 2 == 0)) + "\n")


def expected(k, prompt=""):
    reasoning = "Step 1 for Q%d: 3 x %d + 1 — 推理 ✓." % (k, k)
    value = 3 * k + 1 if k % 3 else 3 * k + 2
    return reasoning, "The answer is \\boxed{%d}." % value


def distill(binary, server_urls, input_path, output_dir, *extra, env=None, wait=True, prompt_key="question"):
    command = [binary, "distill", "--input_file", input_path, "--output_dir", output_dir,
               "--prompt_key", prompt_key, "--response_key", "deepseek_r1_response",
               "--reasoning_key", "deepseek_r1_reasoning", "--base_urls", ",".join(server_urls),
               "--model", "deepseek-r1:671b", "--backoff_base", "0.02", "--backoff_max", "0.2",
               "--progress", "off"] + list(extra)
    environment = dict(os.environ)
    environment.update(env or {})
    if not wait:
        return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    return result


def read_records(path):
    records = []
    if not os.path.exists(path):
        return records
    with open(path, "rb") as handle:
        data = handle.read()
    check(data == b"" or data.endswith(b"\n"), "%s ends without a newline" % path)
    for number, raw in enumerate(data.split(b"\n")[:-1], 1):
        try:
            records.append((raw, json.loads(raw.decode("utf-8"))))
        except (UnicodeDecodeError, ValueError) as error:
            check(False, "%s:%d is not valid UTF-8 JSON: %s" % (path, number, error))
    return records


def output_path(directory, name="in"):
    return os.path.join(directory, "distilled-%s.jsonl" % name)


# ---- cases ---------------------------------------------------------------------------

def case_answers(binary, work):
    """Every reasoning variant, plain and streamed; the input line's bytes are kept."""
    server = Server(work)
    try:
        data = os.path.join(work, "in.jsonl")
        write_dataset(data, 40, extra=lambda k: {"question": "Q%d: LENGTH what?" % k} if k == 40 else {})
        with open(data, "rb") as handle:
            inputs = handle.read().split(b"\n")[:-1]
        for mode in ([], ["--stream"]):
            out = os.path.join(work, "answers" + "".join(mode))
            result = distill(binary, server.urls, data, out, "--concurrency", "7", *mode)
            check(result.returncode == 0, "answers%s: exit %d: %s" % (mode, result.returncode, result.stderr[-500:]))
            records = read_records(output_path(out))
            check(len(records) == 40, "answers%s: %d records, not 40" % (mode, len(records)))
            for raw, record in records:
                n = record["line_num"]
                original = inputs[n]
                check(raw.startswith(original.rstrip()[:-1] + b", \"line_num\": %d, " % n),
                      "answers%s: line %d does not start with its input bytes" % (mode, n))
                k = record["id"]
                reasoning, response = expected(k)
                if k == 40:
                    check(record["finish_reason"] == "length" and record["deepseek_r1_response"] == ""
                          and record["deepseek_r1_reasoning"] == reasoning,
                          "answers%s: finish_reason length record is %r" % (mode, record))
                    continue
                check(record["deepseek_r1_reasoning"] == reasoning and record["deepseek_r1_response"] == response,
                      "answers%s: line %d (variant %d) parsed as %r / %r" % (mode, n, k % 4, record["deepseek_r1_reasoning"],
                                                                           record["deepseek_r1_response"]))
                check(record["finish_reason"] == "stop" and record["deepseek_r1_prompt_tokens"] > 0
                      and record["deepseek_r1_completion_tokens"] > 0, "answers%s: line %d usage/finish %r" % (mode, n, record))
            with open(os.path.join(out, "distilled-in.status")) as handle:
                check(handle.read() == "0-39", "answers%s: status is not 0-39" % mode)
    finally:
        server.stop()


FAULT_OUTCOMES = {  # fault -> "ok" (retried until written) or the recorded HTTP status
    "408": "ok", "409": "ok", "429": "ok", "429date": "ok", "429nora": "ok", "500": "ok", "502html": "ok",
    "503flat": "ok", "504": "ok", "slow_headers": "ok", "truncated": "ok", "chunked_cut": "ok", "reset": "ok",
    "accept_close": "ok", "malformed": "ok", "wrong_schema": "ok", "stream_error": "ok", "keepalive_blank": "ok",
    "invalid_utf8": "ok", "huge": "ok", "400": 400, "401": 401, "403": 403, "404": 404, "422": 422,
}


def case_faults(binary, work):
    """Each fault twice in a row, then an answer: retried faults end written, 4xx recorded once."""
    server = Server(work, endpoints=2)
    try:
        names = sorted(FAULT_OUTCOMES)
        data = os.path.join(work, "faults.jsonl")
        with open(data, "w") as handle:
            for i, name in enumerate(names):
                handle.write(json.dumps({"q": "Q%d FAULT:%sx2" % (i + 1, name), "fault": name}) + "\n")
            handle.write("\n")
            handle.write("{not json\n")
            handle.write(json.dumps({"other": 1}) + "\n")
            handle.write("{}\n")
        for mode in ([], ["--stream"]):
            out = os.path.join(work, "faults" + "".join(mode))
            server.control(reset_counters=True)
            server.process.send_signal(0)
            # the server counts attempts per prompt: a fresh server state per mode
            suffix = " S" if mode else ""
            data_mode = data[:-len(".jsonl")] + ("_stream" if mode else "_plain") + ".jsonl"
            with open(data) as source, open(data_mode, "w") as target:
                for line in source:
                    target.write(line.replace("x2\"", "x2" + suffix + "\""))
            result = distill(binary, server.urls, data_mode, out, "--concurrency", "8", "--max_retries", "4", *mode,
                             prompt_key="q")
            check(result.returncode == 0, "faults%s: exit %d: %s" % (mode, result.returncode, result.stderr[-500:]))
            stem = os.path.basename(data_mode).rsplit(".", 1)[0]
            written = {r["fault"]: r for _, r in read_records(os.path.join(out, "distilled-%s.jsonl" % stem))}
            errors = read_records(os.path.join(out, "distilled-%s.errors.jsonl" % stem))
            by_line = {}
            for _, e in errors:
                by_line.setdefault(e["line_num"], []).append(e)
            for i, name in enumerate(names):
                outcome = FAULT_OUTCOMES[name]
                if outcome == "ok":
                    check(name in written, "faults%s: %s was not retried to success (errors: %s)" % (mode, name, by_line.get(i)))
                else:
                    got = by_line.get(i, [])
                    check(name not in written and len(got) == 1 and got[0].get("http_status") == outcome,
                          "faults%s: %s should be recorded once with HTTP %s, got %s" % (mode, name, outcome, got))
            if "invalid_utf8" in written:
                check("\ufffd" in written["invalid_utf8"]["deepseek_r1_response"] or mode,
                      "faults%s: invalid UTF-8 was not replaced" % mode)
            if "huge" in written and not mode:
                check(len(written["huge"]["deepseek_r1_response"]) == 10 << 20, "faults: the 10 MB answer was cut")
            n = len(names)
            bad = sorted(e["line_num"] for e in sum(by_line.values(), []) if e.get("sample") == -1)
            check(bad == [n, n + 1, n + 2, n + 3], "faults%s: bad input lines recorded as %s" % (mode, bad))
            with open(os.path.join(out, "distilled-%s.log" % stem)) as handle:
                log = handle.read()
            check("RETRY" in log and "SKIP line %d: blank line" % n in log, "faults%s: log lacks RETRY/SKIP lines" % mode)
    finally:
        server.stop()


def case_payment(binary, work):
    server = Server(work)
    try:
        data = os.path.join(work, "pay.jsonl")
        write_dataset(data, 30, extra=lambda k: {"question": "Q%d FAULT:402x1" % k} if k == 11 else {})
        out = os.path.join(work, "pay")
        result = distill(binary, server.urls, data, out, "--concurrency", "1")
        check(result.returncode == 4 and "402" in result.stderr, "payment: exit %d, stderr %r" % (result.returncode, result.stderr[-300:]))
        first = read_records(output_path(out, "pay"))
        check(len(first) == 10, "payment: %d records before the stop, not 10" % len(first))
        result = distill(binary, server.urls, data, out, "--concurrency", "1")
        records = read_records(output_path(out, "pay"))
        check(result.returncode == 0 and sorted(r["line_num"] for _, r in records) == list(range(30)),
              "payment: the rerun did not complete each line once")
    finally:
        server.stop()


def case_keys(binary, work):
    server = Server(work, endpoints=2)
    try:
        data = os.path.join(work, "keys.jsonl")
        write_dataset(data, 20, extra=lambda k: {"question": "Q%d FAULT:401" % k} if k == 3 else {})
        out = os.path.join(work, "keys")
        result = distill(binary, server.urls, data, out, env={"R1LAB_API_KEYS": SECRET})
        check(result.returncode == 0, "keys: exit %d" % result.returncode)
        distill(binary, server.urls, data, out, "--api_keys", SECRET + "A," + SECRET + "B", "--dry-run")
        seen = server.counters()["authorization"]
        check("Bearer " + SECRET in seen, "keys: the server never saw the key (%s)" % seen)
        for name in os.listdir(out):
            with open(os.path.join(out, name), "rb") as handle:
                check(SECRET.encode() not in handle.read(), "keys: the key appears in %s" % name)
        check(SECRET not in result.stderr and SECRET not in result.stdout, "keys: the key appears in the output streams")
    finally:
        server.stop()


def case_concurrency(binary, work):
    server = Server(work, endpoints=2)
    try:
        server.control(latency=0.05)
        data = os.path.join(work, "conc.jsonl")
        write_dataset(data, 200)
        small = os.path.join(work, "conc_small.jsonl")
        write_dataset(small, 20)
        for concurrency in (1, 8, 64):
            out = os.path.join(work, "conc%d" % concurrency)
            server.control(reset_counters=True)
            result = distill(binary, server.urls, small if concurrency == 1 else data, out, "--concurrency", str(concurrency))
            counters = server.counters()
            check(result.returncode == 0 and counters["max_in_flight"] <= concurrency,
                  "concurrency %d: server saw %d in flight" % (concurrency, counters["max_in_flight"]))
            check(counters["max_in_flight"] >= concurrency * 3 // 4,
                  "concurrency %d: only %d in flight (not concurrent?)" % (concurrency, counters["max_in_flight"]))
            check(sum(counters["connections"]) <= concurrency + 8,
                  "concurrency %d: %d connections (keep-alive not reused)" % (concurrency, sum(counters["connections"])))
            if concurrency == 64:
                check(min(counters["requests"]) >= 60, "concurrency: endpoints unbalanced %s" % counters["requests"])
    finally:
        server.stop()


def case_timeouts(binary, work):
    server = Server(work)
    try:
        data = os.path.join(work, "slow.jsonl")
        write_dataset(data, 3, extra=lambda k: {"question": "Q%d FAULT:%sx1" % (k, ["tricklex", "stream_stallx", "429x"][k - 1][:-1])})
        out = os.path.join(work, "slow")
        begin = time.time()
        result = distill(binary, server.urls, data, out, "--timeout", "1.5", "--idle_timeout", "0.8", "--stream")
        elapsed = time.time() - begin
        records = read_records(output_path(out, "slow"))
        with open(os.path.join(out, "distilled-slow.log")) as handle:
            log = handle.read()
        check(result.returncode == 0 and len(records) == 3, "timeouts: exit %d, %d records" % (result.returncode, len(records)))
        check("idle timeout" in log, "timeouts: the stalled stream was not cut by the idle timer")
        check(elapsed >= 1.0, "timeouts: Retry-After: 1 not honoured (%.2f s)" % elapsed)
        out = os.path.join(work, "slow2")
        result = distill(binary, server.urls, data, out, "--timeout", "1.5")  # trickle: prompts seen already
        check(result.returncode == 0, "timeouts: second run exit %d" % result.returncode)
    finally:
        server.stop()


def case_sigint(binary, work):
    server = Server(work)
    try:
        server.control(latency=0.3)
        data = os.path.join(work, "int.jsonl")
        write_dataset(data, 100)
        out = os.path.join(work, "int")
        process = distill(binary, server.urls, data, out, "--concurrency", "4", "--grace", "5", wait=False)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        check(process.returncode == 3, "sigint: exit %d (%s)" % (process.returncode, stderr[-300:]))
        partial = read_records(output_path(out, "int"))
        check(0 < len(partial) < 100, "sigint: %d records after the stop" % len(partial))
        check(server.counters()["in_flight"] == 0, "sigint: requests were left in flight")
        server.control(latency=0)
        result = distill(binary, server.urls, data, out)
        records = read_records(output_path(out, "int"))
        check(result.returncode == 0 and sorted(r["line_num"] for _, r in records) == list(range(100)),
              "sigint: the resumed run does not hold each line once")
    finally:
        server.stop()


def case_keep_correct(binary, work):
    server = Server(work)
    try:
        data = os.path.join(work, "keep.jsonl")
        write_dataset(data, 30)
        out = os.path.join(work, "keep")
        result = distill(binary, server.urls, data, out, "--answer_key", "answer", "--keep", "correct")
        if "answer component is not built" in result.stderr:
            check(result.returncode != 0 and not os.path.exists(output_path(out, "keep")) or
                  not read_records(output_path(out, "keep")), "keep_correct: requests were sent without answers")
            print("  SKIP keep_correct: the answer component is not built", flush=True)
            return
        check(result.returncode == 0, "keep_correct: exit %d: %s" % (result.returncode, result.stderr[-300:]))
        kept = sorted(r["id"] for _, r in read_records(output_path(out, "keep")))
        rejected = sorted(r["id"] for _, r in read_records(os.path.join(out, "distilled-keep.rejected.jsonl")))
        check(kept == [k for k in range(1, 31) if k % 3], "keep_correct: kept %s" % kept)
        check(rejected == [k for k in range(1, 31) if k % 3 == 0], "keep_correct: rejected %s" % rejected)
        for _, record in read_records(output_path(out, "keep")):
            check(record["deepseek_r1_correct"] is True and record["deepseek_r1_answer"] == str(3 * record["id"] + 1),
                  "keep_correct: answer fields %r" % record)
    finally:
        server.stop()


def case_sort_sft(binary, work):
    server = Server(work)
    try:
        data = os.path.join(work, "sft.jsonl")
        write_dataset(data, 50)
        out = os.path.join(work, "sft")
        result = distill(binary, server.urls, data, out, "--concurrency", "16", "--sort", "--n", "2")
        records = read_records(output_path(out, "sft"))
        order = [(r["line_num"], r["sample"]) for _, r in records]
        check(result.returncode == 0 and order == [(i, s) for i in range(50) for s in range(2)], "sort: order %s" % order[:6])
        sft = os.path.join(work, "sft_out.jsonl")
        result = subprocess.run([binary, "sft-data", "--input_file", output_path(out, "sft"), "--output_file", sft],
                                capture_output=True, text=True)
        rows = read_records(sft)
        reasoning, response = expected(1)
        check(result.returncode == 0 and len(rows) == 100 and set(rows[0][1]) == {"src", "tgt"}, "sft-data: %s" % result.stderr)
        check(rows[0][1]["src"] == "Q1: what is 3 x 1 + 1?" and
              rows[0][1]["tgt"] == "<think>\n" + reasoning + "\n</think>\n\n" + response, "sft-data: row %r" % (rows[0][1],))
    finally:
        server.stop()


def case_command_line(binary, work):
    """sft-data, sort and the option parser, without a server."""
    def run(*arguments, cwd=None):
        return subprocess.run([os.path.abspath(binary)] + list(arguments), capture_output=True, text=True, cwd=cwd)

    data = os.path.join(work, "cli_distilled.jsonl")
    rows = [{"line_num": 1, "q": "P1", "r": "A1", "t": "T1"},
            {"line_num": 0, "q": "P0", "r": "A0", "t": "<think>\nT0\n</think>"}]
    text = "".join(json.dumps(row) + "\n" for row in rows)
    with open(data, "w") as f:
        f.write(text)
    keys = ["--prompt_key", "q", "--response_key", "r", "--reasoning_key", "t"]
    # the input as the output: a usage error, the input intact (finding 1)
    result = run("sft-data", "--input_file", data, "--output_file", data, *keys)
    with open(data) as f:
        check(result.returncode == 2 and f.read() == text, "sft-data onto its input: exit %d, %s" % (result.returncode, result.stderr))
    # --no-think-tags: a blank line between reasoning and response (finding 4); --no-think-tags=0 keeps the tags (finding 7)
    sft = os.path.join(work, "cli_sft.jsonl")
    for flag, want in (("--no-think-tags", ["T1\n\nA1", "<think>\nT0\n</think>\n\nA0"]),
                       ("--no-think-tags=true", ["T1\n\nA1", "<think>\nT0\n</think>\n\nA0"]),
                       ("--no-think-tags=0", ["<think>\nT1\n</think>\n\nA1", "<think>\nT0\n</think>\n\nA0"])):
        result = run("sft-data", "--input_file", data, "--output_file", sft, *keys, flag)
        got = [r["tgt"] for _, r in read_records(sft)] if result.returncode == 0 else None
        check(got == want, "sft-data %s: exit %d, tgt %r, want %r" % (flag, result.returncode, got, want))
    # an output in folders that do not exist yet (docs/distill.md's command): they are made
    nested = os.path.join(work, "cli_new", "sft", "train.json")
    result = run("sft-data", "--input_file", data, "--output_file", nested, *keys)
    check(result.returncode == 0 and len(read_records(nested)) == 2,
          "sft-data into new folders: exit %d, %s" % (result.returncode, result.stderr))
    result = run("sft-data", "--input_file", data, "--output_file", sft, *keys, "--no-think-tags=maybe")
    check(result.returncode == 2 and "flag" in result.stderr, "--no-think-tags=maybe: exit %d" % result.returncode)
    # a failing conversion leaves no output file (finding 5): missing key on line 2, a directory, a binary file
    bad = os.path.join(work, "cli_bad.jsonl")
    with open(bad, "w") as f:
        f.write(json.dumps(rows[0]) + "\n" + json.dumps({"q": "P2"}) + "\n")
    binary_input = os.path.join(work, "cli_binary.bin")
    with open(binary_input, "wb") as f:
        f.write(bytes(range(256)) * 4)
    for name, source in (("missing key", bad), ("directory", work), ("binary", binary_input)):
        out = os.path.join(work, "cli_partial.jsonl")
        result = run("sft-data", "--input_file", source, "--output_file", out, *keys)
        check(result.returncode == 1 and not os.path.exists(out) and not os.path.exists(out + ".sft.tmp"),
              "sft-data on a %s input: exit %d, output left: %s" % (name, result.returncode, os.path.exists(out)))
    # boolean flags with a value (finding 7): =false is off, a bad value a usage error
    prompts = os.path.join(work, "cli_prompts.jsonl")
    with open(prompts, "w") as f:
        f.write(json.dumps({"prompt": "What is 1 + 1?"}) + "\n")
    common = ["--input_file", prompts, "--output_dir", os.path.join(work, "cli_out"), "--base_urls", "http://127.0.0.1:9/v1"]
    bodies = {}
    for flag in ("--stream", "--stream=1", "--stream=true", "--stream=false", "--stream=0"):
        result = run("distill", *common, "--dry-run", flag)
        body = json.loads(result.stdout.split("\n", 1)[1]) if result.returncode == 0 else {}
        bodies[flag] = bool(body.get("stream"))
    check(bodies == {"--stream": True, "--stream=1": True, "--stream=true": True, "--stream=false": False, "--stream=0": False},
          "--stream values: %r" % bodies)
    for flag in ("--stream=yes", "--sort=2", "--retry-failed=no", "--dry-run="):
        result = run("distill", *common, "--dry-run", flag)
        check(result.returncode == 2 and result.stdout == "", "%s: exit %d" % (flag, result.returncode))
    # --help lists as required exactly what is required (finding 9): --prompt_key defaults to "prompt"
    result = run("distill", "--help")
    first = result.stdout.splitlines()[0] if result.stdout else ""
    required = re.findall(r"(--\w+) [^\s\[]", first.split("[options]")[0])
    check(result.returncode == 0 and required == ["--input_file", "--output_dir", "--base_urls"] and "--prompt_key K (prompt)" in result.stdout,
          "distill --help: required %r" % required)
    result = run("distill", *common, "--dry-run")
    check(result.returncode == 0 and "What is 1 + 1?" in result.stdout, "distill without --prompt_key: exit %d %s" % (result.returncode, result.stderr))
    # sort --output_file - writes to stdout and creates no file "-" (finding 10)
    result = run("sort", "--input_file", data, "--output_file", "-", cwd=work)
    check(result.returncode == 0 and result.stdout == "".join(json.dumps(row) + "\n" for row in rows[::-1]) and
          not os.path.exists(os.path.join(work, "-")), "sort to stdout: exit %d, stdout %r" % (result.returncode, result.stdout[:80]))
    with open(data) as f:
        check(f.read() == text, "sort to stdout changed its input")


def run_until_done(binary, server, data, out, extra, rng, kills, name, down_after=None):
    """SIGKILL the client at random moments, restart, until it finishes."""
    for attempt in range(kills + 50):
        if down_after is not None and attempt == down_after:
            server.control(down=[1])  # endpoint 1 goes down mid-run
        process = distill(binary, server.urls, data, out, *extra, wait=False)
        if attempt < kills:
            time.sleep(rng.uniform(0.1, 0.8))
            if process.poll() is None:
                process.kill()
            process.communicate()
            continue
        _, stderr = process.communicate(timeout=600)
        if process.returncode == 0:
            return True
        print("  %s: run %d exited %d: %s" % (name, attempt, process.returncode, stderr[-300:]), flush=True)
    return False


def case_exactly_once(binary, work, prompts):
    rng = random.Random(int(os.environ.get("R1_SEED", "7")))
    for samples in (1, 4):
        count = prompts if samples == 1 else max(prompts // 8, 50)
        server = Server(work, endpoints=2, seed=rng.randrange(1 << 30))
        try:
            server.control(fault_rate=0.3)
            data = os.path.join(work, "once%d.jsonl" % samples)
            write_dataset(data, count)
            out = os.path.join(work, "once%d" % samples)
            extra = ["--concurrency", "64", "--max_retries", "40", "--n", str(samples), "--breaker_threshold", "3",
                     "--breaker_base", "0.2", "--breaker_max", "1", "--timeout", "5", "--stream" if samples == 4 else "--seed"] + \
                    ([] if samples == 4 else ["5"])
            done = run_until_done(binary, server, data, out, extra, rng, kills=6, name="exactly_once n=%d" % samples,
                                  down_after=2)
            check(done, "exactly_once n=%d: never finished" % samples)
            records = read_records(output_path(out, "once%d" % samples))
            units = sorted((r["line_num"], r.get("sample", 0)) for _, r in records)
            want = [(i, s) for i in range(count) for s in range(samples)]
            check(units == want, "exactly_once n=%d: %d records for %d units (duplicates or losses)" % (samples, len(units), len(want)))
            errors = read_records(os.path.join(out, "distilled-once%d.errors.jsonl" % samples))
            check(not errors, "exactly_once n=%d: %d permanent failures" % (samples, len(errors)))
            with open(data, "rb") as handle:
                inputs = handle.read().split(b"\n")
            for raw, record in records:
                if not raw.startswith(inputs[record["line_num"]][:-1]):
                    check(False, "exactly_once: line %d lost its input bytes" % record["line_num"])
                    break
            counters = server.counters()
            check(sum(counters["faults"].values()) > 0.2 * sum(counters["requests"]), "exactly_once: too few faults %s" % counters)
            print("  n=%d: %d units, %d requests, faults %s" % (samples, len(want), sum(counters["requests"]),
                                                                 sum(counters["faults"].values())), flush=True)
        finally:
            server.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--case", default=None)
    args = parser.parse_args()
    cases = {"answers": case_answers, "faults": case_faults, "payment": case_payment, "keys": case_keys,
             "concurrency": case_concurrency, "timeouts": case_timeouts, "sigint": case_sigint,
             "keep_correct": case_keep_correct, "sort_sft": case_sort_sft, "command_line": case_command_line,
             "exactly_once": lambda b, w: case_exactly_once(b, w, args.prompts)}
    work = tempfile.mkdtemp(prefix="r1lab_distill_e2e_")
    try:
        ran = 0
        for name, function in cases.items():
            if args.case and name != args.case:
                continue
            begin = time.time()
            before = len(failures)
            print("case %s" % name, flush=True)
            function(args.binary, work)
            print("  %s %s (%.1f s)" % (name, "ok" if len(failures) == before else "FAILED", time.time() - begin), flush=True)
            ran += 1
        if ran == 0:
            print("no case ran")
            return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
