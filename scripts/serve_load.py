"""A bounded load test of an OpenAI-compatible server (scripts/bench_serve.sh runs it).

usage: serve_load.py BASE_URL MODEL [--clients 32] [--max-tokens 32] [--timeout 600]

Starts CLIENTS streaming chat requests at once (greedy, distinct prompts), each through
the official `openai` client, and prints one JSON object: requests that succeeded, total
generated tokens (the server's usage when it reports it, else streamed chunks with
text), wall time from the first request to the last token, aggregate tokens per second,
and the median and 95th percentile of the time to the first token.
"""
import argparse
import json
import statistics
import threading
import time

import openai

p = argparse.ArgumentParser()
p.add_argument("url")
p.add_argument("model")
p.add_argument("--clients", type=int, default=32)
p.add_argument("--max-tokens", type=int, default=32)
p.add_argument("--timeout", type=float, default=600)
a = p.parse_args()
client = openai.OpenAI(base_url=a.url, api_key="none", max_retries=0, timeout=a.timeout)

TOPICS = ["rivers", "mountains", "the sea", "bread", "trains", "music", "winter", "bees"]
results = [None] * a.clients
start_gate = threading.Barrier(a.clients + 1)


def one(i):
    start_gate.wait()
    t0 = time.perf_counter()
    first, tokens, usage = None, 0, None
    try:
        stream = client.chat.completions.create(
            model=a.model,
            messages=[{"role": "user", "content": f"Tell me, in detail, about {TOPICS[i % len(TOPICS)]} (request {i})."}],
            max_tokens=a.max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage.completion_tokens
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter()
                tokens += 1
        results[i] = {"ttft": (first or time.perf_counter()) - t0, "tokens": usage if usage is not None else tokens,
                      "end": time.perf_counter()}
    except Exception as e:  # a failed request is counted, not fatal
        results[i] = {"error": str(e)}


threads = [threading.Thread(target=one, args=(i,)) for i in range(a.clients)]
[t.start() for t in threads]
start_gate.wait()
t0 = time.perf_counter()
[t.join(a.timeout) for t in threads]
ok = [r for r in results if r and "error" not in r]
wall = max((r["end"] for r in ok), default=t0) - t0
ttft = sorted(r["ttft"] for r in ok)
tokens = sum(r["tokens"] for r in ok)
print(json.dumps({
    "clients": a.clients,
    "ok": len(ok),
    "errors": sorted({r["error"][:200] for r in results if r and "error" in r}),
    "tokens": tokens,
    "wall_s": round(wall, 3),
    "tok_s": round(tokens / wall, 2) if wall > 0 else 0,
    "ttft_p50_s": round(statistics.median(ttft), 3) if ttft else None,
    "ttft_p95_s": round(ttft[min(len(ttft) - 1, int(0.95 * len(ttft)))], 3) if ttft else None,
}))
