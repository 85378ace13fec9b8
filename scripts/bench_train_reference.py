"""The reference's side of benches/train.rs: mlx-lm's LoRA training speed and memory on a
model folder and a data folder, with the same settings the Rust benchmark gives ours.
Prints one JSON object: every report's tokens/s and loss, and MLX's peak memory (bytes,
model load included, as ours counts it).

Usage: bench_train_reference.py MODEL_DIR DATA_DIR --iters N --batch B --rank R
       --layers L --keys K1,K2 --report N --max-seq N --dtype DTYPE [--grad-checkpoint]
       [--mask-prompt]
DTYPE: float32, bfloat16, float16, or native (the checkpoint's own; a quantized model's
packed weights stay packed, QLoRA). Adam at 1e-5, mlx-lm's default; validation on one batch
of valid.jsonl before the first step and after the last, outside the timed steps.
"""
import argparse
import json
import sys
import tempfile
import time
import types

# mlx-lm's trainer draws its progress on stdout; the JSON result is this script's stdout.
RESULT, sys.stdout = sys.stdout, sys.stderr

import mlx.core as mx
import mlx.optimizers as optim
from mlx_lm import load
from mlx_lm.tuner.callbacks import TrainingCallback
from mlx_lm.tuner.datasets import CacheDataset, load_local_dataset
from mlx_lm.tuner.trainer import TrainingArgs, train
from mlx_lm.tuner.utils import linear_to_lora_layers


class Recorder(TrainingCallback):
    def __init__(self):
        self.reports = []

    def on_train_loss_report(self, info):
        self.reports.append({"iteration": info["iteration"], "loss": info["train_loss"], "tokens_per_second": info["tokens_per_second"]})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("data")
    for flag in ("--iters", "--batch", "--rank", "--layers", "--report", "--max-seq"):
        p.add_argument(flag, type=int, required=True)
    p.add_argument("--keys", required=True)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--grad-checkpoint", action="store_true")
    p.add_argument("--mask-prompt", action="store_true")
    a = p.parse_args()

    mx.random.seed(0)
    model, tok = load(a.model)
    if a.dtype != "native":
        model.set_dtype(getattr(mx, a.dtype))
    model.freeze()
    keys = [k if "." in k else ("mlp." if k in ("gate_proj", "up_proj", "down_proj") else "self_attn.") + k for k in a.keys.split(",")]
    lora = {"rank": a.rank, "scale": 20.0, "dropout": 0.0, "keys": keys}
    linear_to_lora_layers(model, a.layers, lora)
    train_set, valid_set, _ = load_local_dataset(__import__("pathlib").Path(a.data), tok, types.SimpleNamespace(mask_prompt=a.mask_prompt))
    train_set, valid_set = CacheDataset(train_set), CacheDataset(valid_set)
    rec = Recorder()
    args = TrainingArgs(
        batch_size=a.batch,
        iters=a.iters,
        val_batches=1,
        steps_per_report=a.report,
        steps_per_eval=10**9,
        steps_per_save=10**9,
        max_seq_length=a.max_seq,
        adapter_file=tempfile.mkdtemp() + "/adapters.safetensors",
        grad_checkpoint=a.grad_checkpoint,
    )
    t0 = time.perf_counter()
    train(model, optim.Adam(learning_rate=1e-5), train_set, valid_set, args=args, training_callback=rec)
    print(json.dumps({"reports": rec.reports, "peak_memory": mx.get_peak_memory(), "seconds": time.perf_counter() - t0}), file=RESULT)


if __name__ == "__main__":
    main()
