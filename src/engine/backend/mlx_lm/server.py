# The worker behind mlxrun's `mlx_lm` backend: one process per loaded model, speaking
# line-delimited JSON on stdin/stdout (docs/backends.md describes the protocol).
#
# Requests:  {"id": N, "op": "...", ...}      one per line on stdin
# Replies:   {"id": N, "type": "...", ...}    one per line on stdout
#
# stdout carries protocol lines only: anything else the libraries print goes to stderr,
# which the host keeps as the process's last words for its error messages.
# A reader thread takes stdin, so a "cancel" reaches a generation while it runs; stdin
# closing means the host is gone, and the process exits at once (no orphan).
import json
import os
import queue
import sys
import threading
import time

PROTOCOL = 1
# The mlx-lm versions whose APIs this worker uses (stream detokenizer, generate_step's
# keyword arguments, BatchGenerator, make_sampler / make_logits_processors).
MIN_MLX_LM = (0, 28, 0)

_out = sys.stdout
sys.stdout = sys.stderr
_out_lock = threading.Lock()


def send(msg):
    line = json.dumps(msg, ensure_ascii=False, allow_nan=True)
    with _out_lock:
        _out.write(line + "\n")
        _out.flush()


def version_tuple(v):
    parts = []
    for p in v.split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts)))


def probe():
    """What this Python can do: versions and the model types mlx-lm knows."""
    import mlx.core as mx
    import mlx_lm
    import mlx_lm.models
    from mlx_lm import utils

    models_dir = os.path.dirname(mlx_lm.models.__file__)
    types = sorted(
        f[:-3]
        for f in os.listdir(models_dir)
        if f.endswith(".py") and not f.startswith("_") and f not in ("base.py", "cache.py")
    )
    remap = dict(getattr(utils, "MODEL_REMAPPING", {}))
    return {
        "type": "ready",
        "protocol": PROTOCOL,
        "python": sys.version.split()[0],
        "mlx": mx.__version__,
        "mlx_lm": mlx_lm.__version__,
        "mlx_lm_ok": version_tuple(mlx_lm.__version__) >= MIN_MLX_LM,
        "min_mlx_lm": ".".join(map(str, MIN_MLX_LM)),
        "model_types": types,
        "remapped_types": remap,
        "device": str(mx.default_device()),
    }


class TextStream:
    """Streaming text of generated ids, equal when joined to the tokenizer's decode of
    all of them (what the native backend gives; mlx-lm's own streaming detokenizer drops
    the first token's leading space instead). Decodes a short window: the ids not yet
    fully emitted after one context id that was, so the context gets the same
    first-token treatment in every decode; trailing U+FFFD (an incomplete UTF-8
    character) is held until the next id completes it."""

    def __init__(self, tokenizer):
        self.hf = tokenizer._tokenizer
        self.window = []
        self.emitted = 0

    def add(self, token):
        self.window.append(token)
        text = self.hf.decode(self.window)
        stable = len(text.rstrip("\ufffd"))
        chunk = text[self.emitted:stable] if stable > self.emitted else ""
        self.emitted = max(self.emitted, stable)
        if stable == len(text) and len(self.window) > 1:
            self.window = [token]
            self.emitted = len(self.hf.decode(self.window))
        return chunk

    def finish(self):
        text = self.hf.decode(self.window) if self.window else ""
        self.window = []
        return text[self.emitted:]


class Failure(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


class Worker:
    def __init__(self):
        self.model = None
        self.tokenizer = None
        self.config = None
        self.cancel = threading.Event()

    # -- model ---------------------------------------------------------------------------

    def load(self, req):
        import mlx.core as mx
        from mlx_lm import load

        path = req["path"]
        if not os.path.isdir(path):
            raise Failure("config", f"{path} is not a folder")
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise Failure("config", f"{path}/config.json: file not found")
        try:
            model, tokenizer, config = load(
                path, adapter_path=req.get("adapter_path"), return_config=True
            )
        except FileNotFoundError as e:
            raise Failure("io", str(e))
        except ValueError as e:
            raise Failure("config", f"{path}: {e}")
        dtype = req.get("dtype")
        if dtype:
            model.set_dtype(getattr(mx, dtype))
        mx.eval(model.parameters())
        self.model, self.tokenizer, self.config = model, tokenizer, config
        return self.info()

    def info(self):
        self.need_model()
        import mlx.core as mx
        import mlx.utils

        cfg = self.config
        text = cfg.get("text_config", {}) or {}

        def field(*names):
            for n in names:
                for d in (cfg, text):
                    if d.get(n) is not None:
                        return d[n]
            return None

        layers = getattr(self.model, "layers", None)
        if layers is None and hasattr(self.model, "model"):
            layers = getattr(self.model.model, "layers", None)
        heads = field("num_attention_heads", "n_heads")
        hidden = field("hidden_size", "d_model", "dim")
        head_dim = field("head_dim") or (hidden // heads if hidden and heads else None)
        dtypes = {
            v.dtype
            for _, v in mlx.utils.tree_flatten(self.model.parameters())
            if mx.issubdtype(v.dtype, mx.floating)
        }
        q = cfg.get("quantization") or cfg.get("quantization_config")
        quant = None
        if isinstance(q, dict) and "bits" in q:
            quant = {
                "bits": q["bits"],
                "group_size": q.get("group_size", 64),
                "mode": q.get("mode", "affine"),
            }
        return {
            "type": "info",
            "model_type": cfg.get("model_type", ""),
            "vocab_size": field("vocab_size") or len(self.tokenizer.vocab),
            "hidden_size": hidden or 0,
            "num_layers": len(layers) if layers is not None else (field("num_hidden_layers") or 0),
            "num_heads": heads or 0,
            "num_kv_heads": field("num_key_value_heads") or heads or 0,
            "head_dim": head_dim or 0,
            "max_position_embeddings": field("max_position_embeddings"),
            "tied_embeddings": bool(field("tie_word_embeddings")),
            "dtype": str(sorted(dtypes, key=str)[0]).replace("mlx.core.", "") if dtypes else "float32",
            "quantization": quant,
            "eos_token_ids": sorted(self.tokenizer.eos_token_ids),
        }

    def need_model(self):
        if self.model is None:
            raise Failure("invalid", "no model is loaded")

    # -- text ------------------------------------------------------------------------------

    def encode_prompt(self, prompt):
        """As mlx-lm's generate encodes a text prompt: BOS unless the text starts with it."""
        tok = self.tokenizer
        add = tok.bos_token is None or not prompt.startswith(tok.bos_token)
        return tok.encode(prompt, add_special_tokens=add)

    def prompt_ids(self, req):
        if "tokens" in req:
            ids = [int(t) for t in req["tokens"]]
        elif "messages" in req:
            # As native chat: the template's text, encoded by mlx-lm's BOS rule (a
            # template that writes BOS itself does not get a second one).
            ids = self.encode_prompt(self.render(req, tokenize=False))
        else:
            ids = self.encode_prompt(req["prompt"])
        if not ids:
            raise Failure("invalid", "the prompt has no tokens")
        vocab = self.info_vocab()
        for t in ids:
            if t < 0 or t >= vocab:
                raise Failure("invalid", f"token id {t} is outside the vocabulary (size {vocab})")
        return ids

    def info_vocab(self):
        if not hasattr(self, "_vocab"):
            self._vocab = self.info()["vocab_size"]
        return self._vocab

    def render(self, req, tokenize):
        tok = self.tokenizer
        if getattr(tok, "_chat_template", None) is None and getattr(tok._tokenizer, "chat_template", None) is None:
            raise Failure("template", "the model has no chat template")
        kwargs = dict(req.get("template_kwargs") or {})
        if req.get("template"):
            kwargs["chat_template"] = req["template"]
        try:
            return tok.apply_chat_template(
                req["messages"],
                add_generation_prompt=req.get("add_generation_prompt", True),
                tokenize=tokenize,
                **kwargs,
            )
        except Exception as e:  # jinja's TemplateError and raise_exception's messages
            raise Failure("template", str(e))

    # -- generation ------------------------------------------------------------------------

    def sampling(self, p):
        from mlx_lm.sample_utils import make_logits_processors, make_sampler
        import mlx.core as mx

        if p.get("seed") is not None:
            mx.random.seed(int(p["seed"]))
        sampler = make_sampler(
            temp=p.get("temperature", 0.0),
            top_p=p.get("top_p", 0.0) if p.get("top_p", 1.0) < 1.0 else 0.0,
            min_p=p.get("min_p", 0.0),
            top_k=max(p.get("top_k", 0), 0),
        )
        rp = p.get("repetition_penalty", 1.0)
        processors = make_logits_processors(
            repetition_penalty=rp if rp and rp != 1.0 else None,
            repetition_context_size=p.get("repetition_context_size", 20),
        )
        return sampler, processors

    def stop_ids(self, p):
        stops = set(int(t) for t in p.get("stop_tokens", []))
        if not p.get("ignore_eos", False):
            stops |= set(self.tokenizer.eos_token_ids)
            stops |= set(int(t) for t in p.get("end_of_turn", []))
        return stops

    def check_context(self, ids, p):
        ctx = p.get("context_length")
        if ctx is not None and len(ids) >= ctx:
            raise Failure("invalid", f"the prompt has {len(ids)} tokens; the context length is {ctx}")

    def end_of_turn(self, req):
        """The special token the template writes right after an assistant's message,
        found by rendering a short exchange (what native chat stops at besides EOS)."""
        reply = "Reply to find the end of the turn."
        probe_req = dict(req)
        probe_req["messages"] = [{"role": "user", "content": "Hello."}, {"role": "assistant", "content": reply}]
        probe_req["add_generation_prompt"] = False
        try:
            text = self.render(probe_req, tokenize=False)
        except Failure:
            return []
        pos = text.rfind(reply)
        if pos < 0:
            return []
        hf = self.tokenizer._tokenizer
        special = set(hf.all_special_ids) | {
            i for i, t in getattr(hf, "added_tokens_decoder", {}).items() if getattr(t, "special", False)
        }
        for i in hf.encode(text[pos + len(reply):], add_special_tokens=False):
            if i in special:
                return [] if i == hf.bos_token_id else [i]
            if hf.decode([i]).strip():
                break
        return []

    def generate(self, rid, req):
        import mlx.core as mx
        from mlx_lm.generate import generate_step

        self.need_model()
        p = dict(req.get("params", {}))
        if "messages" in req:
            p["end_of_turn"] = self.end_of_turn(req)
        ids = self.prompt_ids(req)
        self.check_context(ids, p)
        max_tokens = int(p.get("max_tokens", 256))
        if p.get("context_length") is not None:
            max_tokens = min(max_tokens, p["context_length"] - len(ids))
        sampler, processors = self.sampling(p)
        stops = self.stop_ids(p)
        detok = TextStream(self.tokenizer)
        mx.reset_peak_memory()
        start = time.perf_counter()
        first = None
        n = 0
        finish = "length"
        kv = {}
        if p.get("kv_bits"):
            kv = {
                "kv_bits": p["kv_bits"],
                "kv_group_size": p.get("kv_group_size", 64),
                "quantized_kv_start": p.get("quantized_kv_start", 0),
            }
        steps = generate_step(
            mx.array(ids),
            self.model,
            max_tokens=max_tokens,
            sampler=sampler,
            logits_processors=processors,
            prefill_step_size=int(p.get("prefill_step_size", 2048)),
            **kv,
        )
        if max_tokens > 0:
            for token, logprobs in steps:
                token = int(token)
                if first is None:
                    first = time.perf_counter()
                n += 1
                msg = {"id": rid, "type": "token", "token": token}
                if p.get("logprobs"):
                    msg["logprob"] = float(logprobs[token].item())
                if token in stops:
                    msg["stop"] = True
                    send(msg)
                    finish = "stop"
                    break
                msg["text"] = detok.add(token)
                send(msg)
                if self.cancel.is_set():
                    finish = "cancelled"
                    break
                if n >= max_tokens:
                    break
        tail = detok.finish()
        end = time.perf_counter()
        first = first or end
        send(
            {
                "id": rid,
                "type": "done",
                "finish_reason": finish,
                "tail": tail,
                "prompt_tokens": ids,
                "metrics": {
                    "prompt_tokens": len(ids),
                    "generated_tokens": n,
                    "prefill_s": first - start,
                    "decode_s": end - first,
                    "peak_memory": mx.get_peak_memory(),
                    "active_memory": mx.get_active_memory(),
                },
            }
        )

    def classify(self, rid, req):
        """The next token after each prompt: one forward pass per prompt, its last
        position's logits through the sampler, as generate's first step chooses."""
        import mlx.core as mx

        self.need_model()
        p = req.get("params", {})
        sampler, processors = self.sampling(p)
        mx.reset_peak_memory()
        start = time.perf_counter()
        total = 0
        for i, prompt in enumerate(req["prompts"]):
            if self.cancel.is_set():
                break
            try:
                ids = self.prompt_ids({"prompt": prompt} if isinstance(prompt, str) else {"tokens": prompt})
                self.check_context(ids, p)
            except Failure as f:
                send({"id": rid, "type": "row", "row": i, "error": f.message, "kind": f.kind})
                continue
            total += len(ids)
            logits = self.model(mx.array(ids)[None])[:, -1, :].astype(mx.float32)
            tokens = mx.array(ids)
            for proc in processors:
                logits = proc(tokens, logits)
            logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
            token = int(sampler(logprobs).item())
            msg = {"id": rid, "type": "row", "row": i, "token": token, "prompt_tokens": ids}
            if p.get("logprobs"):
                msg["logprob"] = float(logprobs[0, token].item())
            if req.get("return_logits"):
                msg["logits"] = logits[0].tolist()
            send(msg)
        end = time.perf_counter()
        send(
            {
                "id": rid,
                "type": "done",
                "finish_reason": "cancelled" if self.cancel.is_set() else "stop",
                "metrics": {
                    "prompt_tokens": total,
                    "generated_tokens": len(req["prompts"]),
                    "prefill_s": end - start,
                    "decode_s": 0.0,
                    "peak_memory": mx.get_peak_memory(),
                    "active_memory": mx.get_active_memory(),
                },
            }
        )

    def batch_generate(self, rid, req):
        """mlx-lm's continuous batching (BatchGenerator), streamed row by row."""
        import mlx.core as mx
        from mlx_lm.generate import BatchGenerator

        self.need_model()
        p = req.get("params", {})
        sampler, processors = self.sampling(p)
        stops = self.stop_ids(p)
        rows = {}
        prompts = []
        for i, prompt in enumerate(req["prompts"]):
            try:
                ids = self.prompt_ids({"prompt": prompt} if isinstance(prompt, str) else {"tokens": prompt})
                self.check_context(ids, p)
            except Failure as f:
                send({"id": rid, "type": "row_done", "row": i, "error": f.message, "kind": f.kind})
                continue
            prompts.append((i, ids))
        mx.reset_peak_memory()
        start = time.perf_counter()
        first = None
        generated = 0
        if prompts:
            size = int(req.get("max_batch_size") or 32)
            gen = BatchGenerator(
                self.model,
                stop_tokens=[[t] for t in stops] or None,
                sampler=sampler,
                logits_processors=processors,
                completion_batch_size=size,
                prefill_batch_size=min(size, 8),
                prefill_step_size=int(p.get("prefill_step_size", 2048)),
            )
            max_tokens = int(p.get("max_tokens", 256))
            uids = gen.insert([ids for _, ids in prompts], [max_tokens] * len(prompts))
            for uid, (i, ids) in zip(uids, prompts):
                rows[uid] = (i, ids, TextStream(self.tokenizer))
            try:
                while responses := gen.next_generated():
                    for r in responses:
                        i, ids, d = rows[r.uid]
                        if first is None:
                            first = time.perf_counter()
                        generated += 1
                        token = int(r.token)
                        msg = {"id": rid, "type": "token", "row": i, "token": token}
                        if p.get("logprobs"):
                            msg["logprob"] = float(r.logprobs[token].item())
                        if r.finish_reason == "stop":
                            msg["stop"] = True
                        else:
                            msg["text"] = d.add(token)
                        send(msg)
                        if r.finish_reason is not None:
                            send({"id": rid, "type": "row_done", "row": i, "tail": d.finish(),
                                  "prompt_tokens": ids, "finish_reason": r.finish_reason})
                    if self.cancel.is_set():
                        break
            finally:
                gen.close()
        end = time.perf_counter()
        first = first or end
        send(
            {
                "id": rid,
                "type": "done",
                "finish_reason": "cancelled" if self.cancel.is_set() else "stop",
                "metrics": {
                    "prompt_tokens": sum(len(ids) for _, ids in prompts),
                    "generated_tokens": generated,
                    "prefill_s": first - start,
                    "decode_s": end - first,
                    "peak_memory": mx.get_peak_memory(),
                    "active_memory": mx.get_active_memory(),
                },
            }
        )

    # -- dispatch --------------------------------------------------------------------------

    def handle(self, req):
        rid = req.get("id")
        op = req.get("op")
        self.cancel.clear()
        if op == "load":
            msg = self.load(req)
            msg["type"] = "loaded"
        elif op == "info":
            msg = self.info()
        elif op == "generate" or op == "chat":
            return self.generate(rid, req)
        elif op == "classify":
            return self.classify(rid, req)
        elif op == "batch_generate":
            return self.batch_generate(rid, req)
        elif op == "tokenize":
            self.need_model()
            msg = {"type": "tokens", "ids": self.tokenizer.encode(req["text"], add_special_tokens=req.get("add_special_tokens", True))}
        elif op == "detokenize":
            self.need_model()
            msg = {"type": "text", "text": self.tokenizer._tokenizer.decode(req["ids"], skip_special_tokens=req.get("skip_special_tokens", False))}
        elif op == "render_chat":
            self.need_model()
            msg = {"type": "text", "text": self.render(req, tokenize=False)}
        else:
            raise Failure("invalid", f"unknown op {op!r}")
        msg["id"] = rid
        send(msg)


def main():
    try:
        ready = probe()
    except Exception as e:
        send({"type": "fatal", "message": f"cannot import mlx-lm: {type(e).__name__}: {e}"})
        return 1
    send(ready)
    if "--probe" in sys.argv:
        return 0
    worker = Worker()
    requests = queue.Queue()

    def read():
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                req = json.loads(line)
            except ValueError as e:
                send({"type": "error", "kind": "invalid", "message": f"unparsable request: {e}"})
                continue
            if req.get("op") == "cancel":
                worker.cancel.set()
            else:
                requests.put(req)
        # The host closed our stdin: it is gone or done with us.
        os._exit(0)

    threading.Thread(target=read, daemon=True).start()
    while True:
        req = requests.get()
        if req.get("op") == "quit":
            send({"id": req.get("id"), "type": "bye"})
            return 0
        try:
            worker.handle(req)
        except Failure as f:
            send({"id": req.get("id"), "type": "error", "kind": f.kind, "message": f.message})
        except Exception as e:
            kind = "mlx" if type(e).__module__.startswith("mlx") or isinstance(e, RuntimeError) else "internal"
            send({"id": req.get("id"), "type": "error", "kind": kind, "message": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    sys.exit(main())
