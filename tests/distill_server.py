#!/usr/bin/env python3
"""tests/distill_server.py: a fault-injecting OpenAI-compatible test server.

Python standard library only (asyncio, hand-written HTTP/1.1), so that it is
fast enough for the benchmarks (keep-alive, thousands of requests per second)
and can misbehave at the byte level.

    python3 tests/distill_server.py --endpoints 2 --port-file ports.json
        -> {"endpoints": [p0, p1], "control": pc} in ports.json (127.0.0.1)

Chat completions: POST /v1/chat/completions on each endpoint port.

Answers are deterministic per prompt. A prompt holding "Q<k>" gets
    reasoning  "Step 1 for Q<k>: 3 x <k> + 1 — 推理 ✓."
    response   "The answer is \\boxed{X}."   X = 3k+1 when k % 3 != 0, else 3k+2
(gsm8k gold "#### 3k+1": right for k % 3 != 0, wrong for the others).
The reasoning travels as message.reasoning (k % 4 == 0), message.reasoning_content
(1), "<think>R</think>A" in content (2) or "R</think>A" without the opening tag
(3); with --variant one of those for every prompt. "LENGTH" in a prompt gives
finish_reason "length" and content that is reasoning only (no </think>).

Faults, chosen per request:
  - randomly with probability fault_rate from the `faults` list (control), or
  - by the prompt: "FAULT:<name>" (always) or "FAULT:<name>x<count>" (the first
    <count> attempts of that prompt).
  names: 408 409 429 429date 429nora 500 502html 503flat 504 400 401 402 403 404
         422 slow_headers trickle truncated chunked_cut reset accept_close
         malformed wrong_schema invalid_utf8 huge stream_error stream_stall keepalive_blank

Control port:
  GET  /counters  {"max_in_flight", "in_flight", "requests": [per endpoint],
                   "connections": [per endpoint], "faults": {name: n}, "ok": n,
                   "authorization": [distinct Authorization headers seen]}
  POST /control   {"fault_rate": f, "faults": [...], "down": [i], "up": [i],
                   "reset_counters": true, "latency": seconds, "variant": name}
"""
import argparse
import asyncio
import email.utils
import json
import random
import re
import socket
import struct
import sys
import time

RANDOM_FAULTS = ["429", "429nora", "500", "502html", "503flat", "504", "408", "reset",
                 "accept_close", "truncated", "chunked_cut", "malformed", "wrong_schema",
                 "stream_error", "slow_headers"]

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
           403: "Forbidden", 404: "Not Found", 408: "Request Timeout", 409: "Conflict",
           422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class State:
    def __init__(self, endpoints, seed):
        self.fault_rate = 0.0
        self.faults = list(RANDOM_FAULTS)
        self.latency = 0.0
        self.variant = "mixed"
        self.rng = random.Random(seed)
        self.attempts = {}
        self.servers = [None] * endpoints
        self.ports = [0] * endpoints
        self.transports = [set() for _ in range(endpoints)]
        self.reset_counters()

    def reset_counters(self):
        n = len(self.servers)
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = [0] * n
        self.connections = [0] * n
        self.fault_counts = {}
        self.ok = 0
        self.authorization = set()

    def counters(self):
        return {"max_in_flight": self.max_in_flight, "in_flight": self.in_flight,
                "requests": self.requests, "connections": self.connections,
                "faults": self.fault_counts, "ok": self.ok,
                "authorization": sorted(self.authorization)}


def answer_for(prompt):
    """(reasoning, response, variant index, length) for a prompt."""
    m = re.search(r"Q(\d+)", prompt)
    k = int(m.group(1)) if m else len(prompt)
    value = 3 * k + 1 if k % 3 != 0 else 3 * k + 2
    reasoning = "Step 1 for Q%d: 3 x %d + 1 — 推理 ✓." % (k, k)
    response = "The answer is \\boxed{%d}." % value
    return reasoning, response, k % 4, "LENGTH" in prompt


VARIANTS = {"reasoning": 0, "reasoning_content": 1, "think": 2, "think_no_open": 3}


def message_for(state, prompt):
    reasoning, response, variant, length = answer_for(prompt)
    if state.variant != "mixed":
        variant = VARIANTS[state.variant]
    if length:
        return {"role": "assistant", "content": "<think>\n" + reasoning}, "length", reasoning, ""
    if variant == 0:
        message = {"role": "assistant", "content": response, "reasoning": reasoning}
    elif variant == 1:
        message = {"role": "assistant", "content": response, "reasoning_content": reasoning}
    elif variant == 2:
        message = {"role": "assistant", "content": "<think>\n" + reasoning + "\n</think>\n\n" + response}
    else:
        message = {"role": "assistant", "content": reasoning + "\n</think>\n\n" + response}
    return message, "stop", reasoning, response


def completion_body(state, prompt, model):
    message, finish, _, _ = message_for(state, prompt)
    text = (message.get("content") or "") + message.get("reasoning", "") + message.get("reasoning_content", "")
    return {"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": len(prompt) // 4 + 1, "completion_tokens": len(text) // 4 + 1,
                      "total_tokens": len(prompt) // 4 + len(text) // 4 + 2}}


def response_bytes(status, body, content_type="application/json", extra=()):
    head = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status")),
            "Content-Type: " + content_type, "Content-Length: %d" % len(body)]
    head.extend(extra)
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Connection(asyncio.Protocol):
    def __init__(self, state, endpoint):
        self.state = state
        self.endpoint = endpoint
        self.buffer = b""
        self.transport = None
        self.closed = False
        self.queue = asyncio.Queue()
        self.task = None
        self.busy = False

    def connection_made(self, transport):
        self.transport = transport
        if self.endpoint >= 0:
            self.state.connections[self.endpoint] += 1
            self.state.transports[self.endpoint].add(transport)
        self.task = asyncio.get_running_loop().create_task(self.serve())

    def connection_lost(self, exc):
        self.closed = True
        if self.endpoint >= 0:
            self.state.transports[self.endpoint].discard(self.transport)
        self.queue.put_nowait(None)

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            parts = head[0].split(" ")
            self.queue.put_nowait((parts[0], parts[1] if len(parts) > 1 else "/", headers, body))

    def write(self, data):
        if not self.closed:
            self.transport.write(data)

    async def serve(self):
        while True:
            item = await self.queue.get()
            if item is None:
                return
            method, path, headers, body = item
            try:
                if self.endpoint < 0:
                    self.control(method, path, body)
                else:
                    await self.chat(path, headers, body)
            except Exception as error:  # a broken request must not kill the server
                self.write(response_bytes(500, json.dumps({"error": {"message": repr(error)}}).encode()))
            if self.closed:
                return

    def control(self, method, path, body):
        state = self.state
        if path.startswith("/counters"):
            self.write(response_bytes(200, json.dumps(state.counters()).encode()))
            return
        request = json.loads(body or b"{}")
        if "fault_rate" in request:
            state.fault_rate = float(request["fault_rate"])
        if "faults" in request:
            state.faults = list(request["faults"])
        if "latency" in request:
            state.latency = float(request["latency"])
        if "variant" in request:
            state.variant = request["variant"]
        if request.get("reset_counters"):
            state.reset_counters()
        for index in request.get("down", []):
            take_down(state, index)
        loop = asyncio.get_running_loop()
        for index in request.get("up", []):
            loop.create_task(bring_up(state, index))
        self.write(response_bytes(200, b"{}"))

    def pick_fault(self, prompt):
        state = self.state
        m = re.search(r"FAULT:([A-Za-z0-9_]+?)(?:x(\d+))?(?![A-Za-z0-9_])", prompt)
        if m:
            count = state.attempts.get(prompt, 0)
            state.attempts[prompt] = count + 1
            if m.group(2) is None or count < int(m.group(2)):
                return m.group(1)
            return None
        if state.fault_rate > 0 and state.faults and state.rng.random() < state.fault_rate:
            return state.rng.choice(state.faults)
        return None

    async def chat(self, path, headers, body):
        state = self.state
        state.requests[self.endpoint] += 1
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        if "authorization" in headers:
            state.authorization.add(headers["authorization"])
        try:
            request = json.loads(body)
            prompt = request["messages"][-1]["content"]
            fault = self.pick_fault(prompt)
            if fault:
                state.fault_counts[fault] = state.fault_counts.get(fault, 0) + 1
            if state.latency > 0:
                await asyncio.sleep(state.latency)
            await self.respond(fault, prompt, request)
        finally:
            state.in_flight -= 1

    async def respond(self, fault, prompt, request):
        model = request.get("model", "m")
        stream = bool(request.get("stream"))
        if fault == "stream_stall" and stream:  # two events, then only keep-alive comments
            self.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            event = b'data: {"choices": [{"index": 0, "delta": {"content": "x"}}]}\n\n'
            self.write(b"%x\r\n" % len(event) + event + b"\r\n")
            while not self.closed:
                self.write(b"e\r\n: keep-alive\n\n\r\n")
                await asyncio.sleep(0.2)
            return
        if fault is None or fault in ("slow_headers", "invalid_utf8", "huge", "keepalive_blank") or \
                (fault == "stream_error" and stream):
            if fault == "slow_headers":
                await asyncio.sleep(1.0)
            if stream:
                await self.stream(prompt, model, fault)
            else:
                await self.plain(prompt, model, fault)
            self.state.ok += fault is None or fault in ("slow_headers", "keepalive_blank")
            return
        error = lambda status, message: json.dumps(
            {"error": {"message": message, "type": "test_fault", "code": status}}).encode()
        if fault.isdigit() or fault in ("429date", "429nora", "502html", "503flat", "stream_error"):
            status = int(re.match(r"\d+", fault).group(0)) if fault[0].isdigit() else 500
            extra = []
            body = error(status, "injected " + fault)
            content_type = "application/json"
            if fault == "429":
                extra = ["Retry-After: 1"]
            elif fault == "429date":
                extra = ["Retry-After: " + email.utils.formatdate(time.time() + 1, usegmt=True)]
            elif fault == "502html":
                body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                content_type = "text/html"
            elif fault == "503flat":
                body = json.dumps({"object": "error", "message": "injected 503", "type": "x", "code": 503}).encode()
            self.write(response_bytes(status, body, content_type, extra))
            return
        if fault == "reset":
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
            return
        if fault == "accept_close":
            self.transport.close()
            return
        full = json.dumps(completion_body(self.state, prompt, model)).encode()
        if fault == "truncated":
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(full)
            self.write(head.encode() + full[:len(full) // 2])
            await asyncio.sleep(0.01)
            self.transport.close()
        elif fault == "chunked_cut":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            self.write(head + b"%x\r\n" % len(full) + full[:len(full) // 2])
            await asyncio.sleep(0.01)
            self.transport.close()
        elif fault == "trickle":
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(full)
            self.write(head.encode())
            for byte in full:
                if self.closed:
                    return
                self.write(bytes([byte]))
                await asyncio.sleep(1.0)
        elif fault == "malformed":
            self.write(response_bytes(200, full[:len(full) // 2]))
        elif fault == "wrong_schema":
            self.write(response_bytes(200, json.dumps({"result": "no choices here"}).encode()))
        else:
            self.write(response_bytes(400, error(400, "unknown fault " + fault)))

    async def plain(self, prompt, model, fault):
        body = completion_body(self.state, prompt, model)
        if fault == "huge":
            body["choices"][0]["message"] = {"role": "assistant", "content": "x" * (10 << 20),
                                             "reasoning": "r" * (10 << 20)}
        data = json.dumps(body, ensure_ascii=False).encode()
        if fault == "invalid_utf8":
            data = data.replace(b"The answer", b"The \xff\xfe answer \xc3", 1)
        if fault == "keepalive_blank":
            data = b"\n\n\n" + data
        self.write(response_bytes(200, data))

    async def stream(self, prompt, model, fault):
        state = self.state
        message, finish, reasoning, response = message_for(state, prompt)
        crlf = len(prompt) % 2 == 1
        newline = "\r\n" if crlf else "\n"
        chunks = []

        def chunk(delta=None, finish_reason=None, choices=True, usage=None):
            event = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model}
            if choices:
                event["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}]
            else:
                event["choices"] = [] if len(prompt) % 3 else None
            if usage:
                event["usage"] = usage
            chunks.append("data: " + json.dumps(event, ensure_ascii=False) + newline + newline)

        chunk({"role": "assistant", "content": ""})
        chunks.append(": keep-alive" + newline + newline)
        if "reasoning" in message or "reasoning_content" in message:
            field = "reasoning" if "reasoning" in message else "reasoning_content"
            for i in range(0, len(reasoning), 7):
                chunk({field: reasoning[i:i + 7]})
            text = message["content"]
        else:
            text = message["content"]
        for i in range(0, len(text), 5):
            chunk({"content": text[i:i + 5]})
            if fault == "stream_error" and i >= 5:
                chunks.append("data: " + json.dumps({"error": {"message": "injected stream error", "code": 500}}) + newline + newline)
                break
        if fault != "stream_error":
            chunk({}, finish)
            chunk(choices=False, usage={"prompt_tokens": len(prompt) // 4 + 1,
                                        "completion_tokens": (len(reasoning) + len(text)) // 4 + 1})
            chunks.append("data: [DONE]" + newline + newline)
        data = "".join(chunks).encode()
        if fault == "invalid_utf8":
            data = data.replace(b"The", b"\xff\xfeThe", 1)
        self.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        # split the stream at arbitrary byte positions (events cut across packets)
        position = 0
        while position < len(data):
            step = state.rng.randint(1, 64)
            piece = data[position:position + step]
            self.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            position += step
            if state.rng.random() < 0.2:
                await asyncio.sleep(0)
            if self.closed:
                return
        self.write(b"0\r\n\r\n")


def take_down(state, index):
    server = state.servers[index]
    if server is not None:
        server.close()
        state.servers[index] = None
    for transport in list(state.transports[index]):
        transport.abort()


async def bring_up(state, index):
    if state.servers[index] is None:
        loop = asyncio.get_running_loop()
        state.servers[index] = await loop.create_server(lambda: Connection(state, index), "127.0.0.1",
                                                        state.ports[index], reuse_address=True, backlog=4096)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--variant", default="mixed")
    args = parser.parse_args()
    state = State(args.endpoints, args.seed)
    state.fault_rate = args.fault_rate
    state.variant = args.variant
    loop = asyncio.get_running_loop()
    for index in range(args.endpoints):
        server = await loop.create_server(lambda index=index: Connection(state, index), "127.0.0.1", 0,
                                          reuse_address=True, backlog=4096)
        state.servers[index] = server
        state.ports[index] = server.sockets[0].getsockname()[1]
    control = await loop.create_server(lambda: Connection(state, -1), "127.0.0.1", 0, backlog=64)
    ports = {"endpoints": state.ports, "control": control.sockets[0].getsockname()[1]}
    temporary = args.port_file + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(ports, handle)
    import os
    os.replace(temporary, args.port_file)
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
