"""Records mlx-lm's own tensor-parallel generation on the fixtures whose family mlx-lm
shards (its model class has `shard()`: llama and qwen3 here; qwen2 and gemma3_text have none).

Usage: distributed_refs.py FIXTURES_DIR FIXTURES_QUANT_DIR OUT_DIR

Run as is, it starts itself as 2 ranks joined by MLX's ring backend on 127.0.0.1 (free
ports, a hostfile in OUT_DIR, MLX_RANK per process: what `mlx.launch -n 2 --backend ring`
sets up) and waits for both. Each rank loads a fixture with mlx_lm.utils.load_model
(lazy), casts it to float32 (dense fixtures: what the engine computes in on the CPU),
calls model.shard(group) -- mlx-lm's all-to-sharded q/k/v/gate/up and sharded-to-all o/down
with their all_sum -- and runs greedy generate_step on the prompt. Rank 0 also runs the
unsharded model, and writes

  OUT_DIR/<fixture>.json  {fixture, family, ranks, prompt, prompt_ids, max_tokens,
                           sharded_ids, single_ids, mlx, mlx_lm}

Quantized fixtures are sharded packed (as mlx-lm does), in their stored dtype; those whose
MLP size over 2 is not a whole number of quantization groups cannot be split and are left out.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

PROMPT = "Hello world"
MAX_TOKENS = 16
DENSE = ["llama3", "llama-linear", "qwen3"]
QUANT = ["llama3-q8g32", "qwen3-q8g32"]
RANKS = 2


def rank_main(fixtures, quant, out_dir):
    import mlx.core as mx
    import mlx_lm
    from mlx_lm.generate import generate_step
    from mlx_lm.tokenizer_utils import load as load_tokenizer
    from mlx_lm.utils import load_model

    group = mx.distributed.init(strict=True, backend="ring")
    jobs = [(fixtures / n, False) for n in DENSE] + [(quant / n, True) for n in QUANT]
    for path, quantized in jobs:
        def load():
            model, config = load_model(path, lazy=True)
            if not quantized:
                model.set_dtype(mx.float32)
            return model, config

        tokenizer = load_tokenizer(path)
        bos = tokenizer.bos_token
        add_special = bos is None or not PROMPT.startswith(bos)
        ids = tokenizer.encode(PROMPT, add_special_tokens=add_special)

        def greedy(model):
            toks = []
            for tok, _ in generate_step(mx.array(ids), model, max_tokens=MAX_TOKENS,
                                        sampler=lambda lp: mx.argmax(lp, axis=-1)):
                toks.append(int(tok))
            return toks

        model, config = load()
        model.shard(group)
        mx.eval(model.parameters())
        sharded = greedy(model)
        if group.rank() == 0:
            single_model, _ = load()
            mx.eval(single_model.parameters())
            single = greedy(single_model)
            record = dict(fixture=path.name, family=config["model_type"], ranks=group.size(),
                          prompt=PROMPT, prompt_ids=ids, max_tokens=MAX_TOKENS,
                          sharded_ids=sharded, single_ids=single, mlx=mx.__version__,
                          mlx_lm=mlx_lm.__version__)
            (out_dir / f"{path.name}.json").write_text(json.dumps(record, indent=1) + "\n")
            print(path.name, "sharded", sharded, "single", single, flush=True)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    fixtures, quant, out_dir = (Path(a) for a in sys.argv[1:])
    if "MLX_RANK" in os.environ:
        return rank_main(fixtures, quant, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    socks = [socket.socket() for _ in range(RANKS)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    hosts = [[f"127.0.0.1:{s.getsockname()[1]}"] for s in socks]
    for s in socks:
        s.close()
    hostfile = out_dir / "hosts.json"
    hostfile.write_text(json.dumps(hosts))
    procs = [subprocess.Popen([sys.executable, __file__, *sys.argv[1:]],
                              env=dict(os.environ, MLX_RANK=str(r), MLX_HOSTFILE=str(hostfile)))
             for r in range(RANKS)]
    codes = [p.wait(timeout=900) for p in procs]
    hostfile.unlink()
    if any(codes):
        sys.exit(f"a rank failed: exit codes {codes}")


if __name__ == "__main__":
    main()
