"""mlx-lm's LoRA training on a fixture, recorded for tests/train.rs.

Usage: lora_refs.py FIXTURES DATA OUT

For each case (a dataset format, with or without prompt masking) on the qwen3 fixture in
float32: puts mlx-lm's LoRA layers on the attention's q and v projections of every layer,
gives them seeded random initial weights (B non-zero too, so that the first gradients
are not trivially zero), saves those as the initial adapter, then records

  - the loss and the gradients of the first batch (mlx.nn.value_and_grad),
  - 20 steps of mlx_lm.tuner.trainer.train (Adam, constant learning rate, one batch of
    the four training examples per step, validation before the first step and after the last): every step's
    training loss and the validation losses,
  - the trained adapter folder as mlx-lm writes it (adapters.safetensors +
    adapter_config.json), and mlx-lm's greedy tokens with that adapter on a prompt.

OUT/<case>/ holds init.safetensors, grads.safetensors, adapter/ and ref.json.
"""

import json
import sys
import time
import types
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm import load
from mlx_lm.generate import generate_step
from mlx_lm.tuner.callbacks import TrainingCallback
from mlx_lm.tuner.datasets import CacheDataset, load_local_dataset
from mlx_lm.tuner.trainer import TrainingArgs, default_loss, iterate_batches, train
from mlx_lm.tuner.utils import linear_to_lora_layers

STEPS = 20
LORA = {"rank": 4, "scale": 10.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "self_attn.v_proj"]}
LEARNING_RATE = 1e-3
MAX_SEQ_LENGTH = 2048
PROMPT = "What colour is the sky on Zorbia?"
CASES = [
    ("text", "text", False),
    ("completions-masked", "completions", True),
    ("chat-masked", "chat", True),
]


class Recorder(TrainingCallback):
    def __init__(self):
        self.train, self.val = [], []

    def on_train_loss_report(self, info):
        self.train.append({"iteration": info["iteration"], "loss": info["train_loss"], "lr": info["learning_rate"]})

    def on_val_loss_report(self, info):
        self.val.append({"iteration": info["iteration"], "loss": info["val_loss"]})


def run_case(fixture, data, out, name, fmt, mask):
    t0 = time.perf_counter()
    mx.random.seed(0)
    np.random.seed(0)
    model, tok = load(str(fixture))
    model.freeze()
    num_layers = len(model.layers)
    linear_to_lora_layers(model, num_layers, LORA)
    # Seeded initial adapter weights: A as mlx-lm draws it, B small and non-zero.
    params = dict(tree_flatten(model.trainable_parameters()))
    key = mx.random.key(1)
    init = {}
    for i, (k, v) in enumerate(sorted(params.items())):
        if k.endswith("lora_b"):
            v = 0.05 * mx.random.normal(v.shape, key=mx.random.split(key, i + 2)[i + 1])
        init[k] = v.astype(mx.float32)
    model.load_weights(list(init.items()), strict=False)
    mx.eval(model.parameters())
    case_dir = out / name
    case_dir.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(case_dir / "init.safetensors"), init)

    args = types.SimpleNamespace(mask_prompt=mask)
    train_set, valid_set, _ = load_local_dataset(data / fmt, tok, args)
    train_set, valid_set = CacheDataset(train_set), CacheDataset(valid_set)

    batch, lengths = next(iterate_batches(train_set, 4, MAX_SEQ_LENGTH))
    (loss, ntoks), grads = nn.value_and_grad(model, default_loss)(model, batch, lengths)
    grads = dict(tree_flatten(grads))
    mx.eval(loss, ntoks, grads)
    mx.save_safetensors(str(case_dir / "grads.safetensors"), grads)

    adapter_dir = case_dir / "adapter"
    adapter_dir.mkdir(exist_ok=True)
    with open(adapter_dir / "adapter_config.json", "w") as f:
        json.dump({"fine_tune_type": "lora", "num_layers": num_layers, "lora_parameters": LORA}, f, indent=2)
    rec = Recorder()
    targs = TrainingArgs(
        batch_size=4,
        iters=STEPS,
        val_batches=-1,
        steps_per_report=1,
        steps_per_eval=STEPS,
        steps_per_save=10_000,
        max_seq_length=MAX_SEQ_LENGTH,
        adapter_file=str(adapter_dir / "adapters.safetensors"),
    )
    train(model, optim.Adam(learning_rate=LEARNING_RATE), train_set, valid_set, args=targs, training_callback=rec)

    prompt = tok.encode(PROMPT)
    greedy = []
    for token, _ in generate_step(mx.array(prompt), model, max_tokens=16, sampler=lambda x: mx.argmax(x, axis=-1)):
        greedy.append(int(token))
    ref = {
        "fixture": fixture.name,
        "format": fmt,
        "mask_prompt": mask,
        "lora": LORA,
        "num_layers": num_layers,
        "learning_rate": LEARNING_RATE,
        "steps": STEPS,
        "first_batch": {"tokens": np.array(batch).tolist(), "lengths": np.array(lengths).tolist(), "loss": loss.item(), "ntoks": ntoks.item()},
        "train": rec.train,
        "val": rec.val,
        "prompt": PROMPT,
        "prompt_tokens": prompt,
        "greedy_with_adapter": greedy,
    }
    with open(case_dir / "ref.json", "w") as f:
        json.dump(ref, f, indent=1)
    print(f"{name}: loss {rec.train[0]['loss']:.5f} -> {rec.train[-1]['loss']:.5f} ({time.perf_counter() - t0:.1f} s)")


def main():
    fixtures, data, out = (Path(a) for a in sys.argv[1:4])
    for name, fmt, mask in CASES:
        run_case(fixtures / "qwen3", data, out, name, fmt, mask)


if __name__ == "__main__":
    main()
