#!/usr/bin/env python3
"""tests/test_answer_cli.py — the command lines `r1lab answer extract`,
`r1lab answer equal` and `r1lab eval`: usage errors (exit 2) for missing
option values, a second input and bad numbers; no partial output file after
an error (exit 1); a successful run writes its file whole.

    python3 tests/test_answer_cli.py PATH/TO/r1lab
"""
import json
import os
import subprocess
import sys
import tempfile

failures = []


def run(cli, *args, stdin=None):
    p = subprocess.run([cli, *args], input=stdin, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def check(name, condition, detail=""):
    print(("ok   " if condition else "FAIL ") + name + ("" if condition else ": " + detail))
    if not condition:
        failures.append(name)


def write(path, lines):
    with open(path, "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


def leftovers(directory):
    return sorted(n for n in os.listdir(directory) if ".tmp." in n)


def main():
    cli = sys.argv[1]
    d = tempfile.mkdtemp(prefix="r1lab_answer_cli_")
    good = os.path.join(d, "good.jsonl")
    write(good, [{"id": 1, "text": "\\boxed{72}", "gold": "1", "pred": "1.0"},
                 {"id": 2, "text": "the answer is 5", "gold": "0", "pred": "1e-20"}])
    missing2 = os.path.join(d, "missing2.jsonl")
    write(missing2, [{"text": "\\boxed{1}"}, {"other": "x"}, {"text": "\\boxed{3}"}])
    missing3 = os.path.join(d, "missing3.jsonl")
    write(missing3, [{"r": "\\boxed{1}", "g": "1"}, {"r": "\\boxed{2}", "g": "2"}, {"r": "\\boxed{3}"}])

    # finding 11: an option at the end without its value; a second input
    own = {"extract": ("--output", "--key", "--backend"),
           "equal": ("--output", "--tolerance", "--backend")}
    for sub in ("extract", "equal"):
        for option in own[sub]:
            code, _, err = run(cli, "answer", sub, good, option)
            check(f"answer {sub} {option} without a value: exit 2 naming it",
                  code == 2 and f"{option} needs a value" in err, f"exit {code}, stderr {err!r}")
    # an option of the other subcommand is refused, not ignored
    for sub, option in (("extract", "--explain"), ("extract", "--tolerance"), ("equal", "--key")):
        arguments = [option] if option == "--explain" else [option, "0.1" if option == "--tolerance" else "text"]
        code, out, err = run(cli, "answer", sub, good, *arguments)
        check(f"answer {sub} {option}: exit 2, it belongs to the other subcommand",
              code == 2 and out == "" and "belongs to" in err, f"exit {code}, stderr {err!r}")
        code, out, err = run(cli, "answer", sub, good, missing2)
        check(f"answer {sub} with two inputs: exit 2", code == 2 and out == "" and "one INPUT" in err,
              f"exit {code}, stderr {err!r}")

    # finding 6: numbers checked when parsed
    for bad in ("abc", "", "1", "1.5", "nan", "-1", "1e-3x", "inf", "1e999"):
        code, out, err = run(cli, "answer", "equal", good, "--tolerance", bad)
        check(f"--tolerance {bad!r}: exit 2, nothing written", code == 2 and out == "" and "--tolerance" in err,
              f"exit {code}, stdout {out!r}, stderr {err!r}")
    code, out, _ = run(cli, "answer", "equal", good, "--tolerance", "0")
    rows = [json.loads(x) for x in out.splitlines()]
    check("--tolerance 0 accepted", code == 0 and [r["equal"] for r in rows] == [True, False], f"exit {code}, {out!r}")
    code, out, _ = run(cli, "answer", "equal", good, "--tolerance", "0.5")
    check("--tolerance 0.5 accepted", code == 0 and len(out.splitlines()) == 2, f"exit {code}")
    eval_args = ["eval", "--input", missing3, "--pred-key", "r", "--gold-key", "g", "--gold-format", "plain"]
    ok_args = ["eval", "--input", good, "--pred-key", "text", "--gold-key", "gold", "--gold-format", "plain"]
    for bad in ("abc", "-3", "0", "2x", "", "100000", "99999999999999999999"):
        code, out, err = run(cli, *ok_args, "--threads", bad)
        check(f"--threads {bad!r}: exit 2", code == 2 and out == "" and "--threads" in err,
              f"exit {code}, stdout {out!r}, stderr {err!r}")
    code, out, _ = run(cli, *ok_args, "--threads", "2")
    check("--threads 2 accepted", code == 0 and "items      2" in out, f"exit {code}, {out!r}")

    # finding 5: no partial output after an error; an existing file is kept
    o = os.path.join(d, "o.jsonl")
    code, _, err = run(cli, "answer", "extract", missing2, "--output", o)
    check("answer extract, missing key on line 2: exit 1, no o.jsonl",
          code == 1 and not os.path.exists(o) and leftovers(d) == [],
          f"exit {code}, exists {os.path.exists(o)}, leftovers {leftovers(d)}, stderr {err!r}")
    with open(o, "w") as f:
        f.write("previous\n")
    code, _, _ = run(cli, "answer", "extract", missing2, "--output", o)
    check("answer extract error: an existing output is left as it was",
          code == 1 and open(o).read() == "previous\n" and leftovers(d) == [], f"exit {code}, {open(o).read()!r}")
    code, _, _ = run(cli, "answer", "equal", missing2, "--output", o)
    check("answer equal error: an existing output is left as it was",
          code == 1 and open(o).read() == "previous\n" and leftovers(d) == [], f"exit {code}")
    code, _, _ = run(cli, "answer", "extract", good, "--output", o)
    rows = [json.loads(x) for x in open(o)]
    check("answer extract success: the file replaced whole",
          code == 0 and [r["answer"] for r in rows] == ["72", "5"] and leftovers(d) == [], f"exit {code}, {rows}")
    mode = os.stat(o).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    check("the output has fopen's mode (0666 & ~umask)", mode == 0o666 & ~umask, oct(mode))
    same = os.path.join(d, "same.jsonl")
    write(same, [{"id": 7, "text": "\\boxed{9}"}])
    code, _, _ = run(cli, "answer", "extract", same, "--output", same)
    rows = [json.loads(x) for x in open(same)]
    check("answer extract with output = input reads the input whole first",
          code == 0 and len(rows) == 1 and rows[0]["answer"] == "9", f"exit {code}, {rows}")
    code, out, _ = run(cli, "answer", "extract", missing2)
    check("answer extract to stdout still streams the lines before the error",
          code == 1 and len(out.splitlines()) == 1, f"exit {code}, {out!r}")

    items = os.path.join(d, "items.jsonl")
    code, out, err = run(cli, *eval_args, "--output", items)
    check("eval --output, missing key on line 3: exit 1, no items.jsonl",
          code == 1 and not os.path.exists(items) and leftovers(d) == [] and out == "",
          f"exit {code}, exists {os.path.exists(items)}, leftovers {leftovers(d)}, stderr {err!r}")
    code, out, _ = run(cli, *ok_args, "--output", items)
    check("eval --output success: one line per item",
          code == 0 and len(open(items).read().splitlines()) == 2 and leftovers(d) == [], f"exit {code}")
    code, out, _ = run(cli, "eval", "--input", good, "--pred-key", "text", "--gold-key", "gold",
                       "--gold-format", "plain", "--output", os.path.join(d, "no", "such", "dir.jsonl"))
    check("eval --output into a missing directory: exit 1", code == 1, f"exit {code}")

    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)
    print(f"answer cli: {len(failures)} failed" if failures else "answer cli: all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
