#!/usr/bin/env bash
# bench/distill_bench.sh — end-to-end throughput and memory of `r1lab distill`
# against tests/distill_server.py with zero latency on 127.0.0.1.
#
#   bench/distill_bench.sh BUILD_DIR [PROMPTS=20000] [BIG_LINES=1000000]
#
# Prints, for --concurrency 64 and 1024: requests/s (finished units / wall
# seconds of the client, from its own summary line) and the TCP connections
# the server accepted (keep-alive reuse); then peak RSS (VmHWM via /usr/bin/time -v) of a run over a
# BIG_LINES-line input (0 skips it). The server is one Python process (one core); on a
# 2-core machine it, not the client, is usually the limit: the client's CPU
# seconds per request are printed too.
set -euo pipefail
build=${1:?usage: bench/distill_bench.sh BUILD_DIR [PROMPTS] [BIG_LINES]}
prompts=${2:-20000}
big=${3:-1000000}
here=$(cd "$(dirname "$0")/.." && pwd)
binary=$(cd "$build" && pwd)/r1lab
work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

python3 "$here/tests/distill_server.py" --endpoints 1 --port-file "$work/ports.json" > /dev/null &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/ports.json" ] && break; sleep 0.1; done
read -r port control < <(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['endpoints'][0], d['control'])" "$work/ports.json")

make_input() { # $1 path, $2 lines
    python3 - "$1" "$2" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for k in range(1, int(sys.argv[2]) + 1):
        f.write('{"id": %d, "question": "Q%d: what is 3 x %d + 1?", "answer": "#### %d"}\n' % (k, k, k, 3 * k + 1))
PY
}

run() { # $1 input, $2 out dir, $3 concurrency -> "units seconds user+sys maxrss_kb"
    /usr/bin/time -f "TIME %U %S %M" "$binary" distill --input_file "$1" --output_dir "$2" --prompt_key question \
        --response_key deepseek_r1_response --reasoning_key deepseek_r1_reasoning \
        --base_urls "http://127.0.0.1:$port/v1" --concurrency "$3" --progress off 2> "$2.err" || { cat "$2.err"; exit 1; }
    python3 - "$2.err" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"finished: (\d+) written.* in ([0-9.]+) s", text)
t = re.search(r"TIME ([0-9.]+) ([0-9.]+) (\d+)", text)
print(m.group(1), m.group(2), float(t.group(1)) + float(t.group(2)), t.group(3))
PY
}

make_input "$work/in.jsonl" "$prompts"
echo "r1lab distill vs tests/distill_server.py (zero latency, loopback), $prompts prompts, $(nproc) cores"
for concurrency in 64 1024; do
    curl -s -X POST "http://127.0.0.1:$control/control" -d '{"reset_counters": true}' > /dev/null
    read -r units seconds cpu rss < <(run "$work/in.jsonl" "$work/out$concurrency" "$concurrency")
    connections=$(curl -s "http://127.0.0.1:$control/counters" | python3 -c "import json,sys; print(sum(json.load(sys.stdin)['connections']))")
    python3 -c "import sys; u,s,c=map(float,sys.argv[1:4]); print('concurrency %5d: %6.0f requests/s  (%d requests in %.2f s; client CPU %.0f us/request; %s connections; client peak RSS %s kB)' % (int(sys.argv[5]), u/s, u, s, 1e6*c/u, sys.argv[6], sys.argv[4]))" \
        "$units" "$seconds" "$cpu" "$rss" "$concurrency" "$connections"
done
[ "$big" -gt 0 ] || exit 0
make_input "$work/big.jsonl" "$big"
read -r units seconds cpu rss < <(run "$work/big.jsonl" "$work/outbig" 256)
python3 -c "import sys; print('%d-line input, concurrency 256: peak RSS %.1f MB, %.0f requests/s' % (int(sys.argv[1]), int(sys.argv[2]) / 1024, float(sys.argv[1]) / float(sys.argv[3])))" "$units" "$rss" "$seconds"
