"""Drives `mlxrun serve` with the official OpenAI client (tests/serve.rs).

usage: serve_client.py BASE_URL API_KEY MODE [ARGS...]; prints one JSON value.
  basic MESSAGE MAX_TOKENS    chat and completions, streamed and not, and the model list
  concurrent N MAX_TOKENS     N streamed chats at once (distinct messages), their texts
  disconnect MAX_TOKENS       reads two chunks of a stream, then closes the connection
  logprobs MESSAGE MAX_TOKENS N   log-probabilities with N alternatives: chat and completions,
                              streamed and not, each as [[token, logprob, [[token, logprob], ...]], ...]
  mixed MAX_TOKENS            greedy and sampled (seeded and not) chats at once, then the seeded
                              ones alone: their texts
"""
import json
import sys
import threading

import openai

base, key, mode, *args = sys.argv[1:]
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=300)


def chat(message, max_tokens, **kw):
    return client.chat.completions.create(
        model="qwen3", messages=[{"role": "user", "content": message}], max_tokens=max_tokens, temperature=0, **kw
    )


def streamed_text(stream):
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for c in chunk.choices:
            text += (c.delta.content if hasattr(c, "delta") else c.text) or ""
            finish = c.finish_reason or finish
    return text, finish, usage


if mode == "basic":
    message, n = args[0], int(args[1])
    r = chat(message, n, logprobs=True)
    s_text, s_finish, s_usage = streamed_text(chat(message, n, stream=True, stream_options={"include_usage": True}))
    c = client.completions.create(model="qwen3", prompt=message, max_tokens=n, temperature=0)
    cs_text, _, _ = streamed_text(client.completions.create(model="qwen3", prompt=message, max_tokens=n, temperature=0, stream=True))
    print(json.dumps({
        "models": [m.id for m in client.models.list().data],
        "chat": r.choices[0].message.content,
        "chat_finish": r.choices[0].finish_reason,
        "chat_usage": r.usage.model_dump(),
        "chat_logprobs": len(r.choices[0].logprobs.content),
        "stream": s_text,
        "stream_finish": s_finish,
        "stream_usage": s_usage,
        "completion": c.choices[0].text,
        "completion_stream": cs_text,
    }))
elif mode == "concurrent":
    n, max_tokens = int(args[0]), int(args[1])
    texts = [None] * n
    go = threading.Barrier(n)

    def one(i):
        go.wait()
        texts[i] = streamed_text(chat(f"Request number {i}: say something.", max_tokens, stream=True))[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps(texts))
elif mode == "disconnect":
    stream = chat("Talk for a long time.", int(args[0]), stream=True)
    got = 0
    for _ in stream:
        got += 1
        if got == 2:
            break
    stream.close()
    print(json.dumps(got))
elif mode == "logprobs":
    message, max_tokens, n = args[0], int(args[1]), int(args[2])

    def chat_entries(logprobs):
        return [[e.token, e.logprob, [[t.token, t.logprob] for t in e.top_logprobs]] for e in logprobs.content]

    def completion_entries(lp):
        # OpenAI's legacy shape: parallel lists, the alternatives as {token: logprob}.
        tops = [sorted(d.items(), key=lambda kv: -kv[1]) for d in lp.top_logprobs]
        return [[t, v, [list(kv) for kv in top]] for t, v, top in zip(lp.tokens, lp.token_logprobs, tops)]

    r = chat(message, max_tokens, logprobs=True, top_logprobs=n)
    streamed = []
    for chunk in chat(message, max_tokens, logprobs=True, top_logprobs=n, stream=True):
        for c in chunk.choices:
            if c.logprobs is not None:
                streamed += chat_entries(c.logprobs)
    c = client.completions.create(model="qwen3", prompt=message, max_tokens=max_tokens, temperature=0, logprobs=n)
    c_streamed = []
    for chunk in client.completions.create(model="qwen3", prompt=message, max_tokens=max_tokens, temperature=0, logprobs=n, stream=True):
        for ch in chunk.choices:
            if ch.logprobs is not None:
                c_streamed += completion_entries(ch.logprobs)
    print(json.dumps({
        "chat": chat_entries(r.choices[0].logprobs),
        "chat_stream": streamed,
        "completion": completion_entries(c.choices[0].logprobs),
        "completion_stream": c_streamed,
        "completion_text": c.choices[0].text,
        "completion_offsets": c.choices[0].logprobs.text_offset,
    }))
elif mode == "mixed":
    max_tokens = int(args[0])
    settings = [
        {"temperature": 0},
        {"temperature": 0.8, "top_p": 0.9, "seed": 7},
        {"temperature": 0},
        {"temperature": 1.0, "top_k": 20, "seed": 11},
        {"temperature": 0.9, "min_p": 0.05},
        {"temperature": 0, "logprobs": True, "top_logprobs": 4},
    ]
    texts = [None] * len(settings)
    go = threading.Barrier(len(settings))

    def run(i, s):
        kw = dict(s)
        # Fields OpenAI's API lacks travel in the body as they are.
        extra = {k: kw.pop(k) for k in ("top_k", "min_p") if k in kw}
        r = client.chat.completions.create(
            model="qwen3", messages=[{"role": "user", "content": f"Request number {i}: say something."}],
            max_tokens=max_tokens, stream=True, extra_body=extra, **kw)
        return streamed_text(r)[0]

    def one(i):
        go.wait()
        texts[i] = run(i, settings[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(settings))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    alone = {i: run(i, s) for i, s in enumerate(settings) if "seed" in s}
    print(json.dumps({"together": texts, "seeded_alone": alone}))
else:
    sys.exit(f"unknown mode {mode}")
