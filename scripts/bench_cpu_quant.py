"""The driver of scripts/bench_cpu_quant.sh (which sets the environment and the paths):
our engine beside llama.cpp's llama-bench, and optionally mlx-lm, on GGUF files, the
engines interleaved run by run. Prints progress (with the load average) on stderr and a
markdown table on stdout.

Usage: bench_cpu_quant.py --mlxrun BIN --llama-bench BIN --pairs N --prompt N --gen N
           [--mlx-lm-dir DIR --openblas LIB] LABEL=FILE ...

Each round runs every engine once on the model, in an order that rotates from round to
round (ours first, then llama.cpp first, ...), so a disturbance that lasts longer than a
run falls on both; the ratio ours / other is taken within each round. mlx-lm, which cannot
read GGUF, runs in one persistent scripts/bench_worker.py process on DIR (the f32 folder
that `mlxrun convert` makes of the first model) and only in the first model's rounds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

SCRIPTS = os.path.dirname(os.path.abspath(__file__))


def loadavg():
    """/proc/loadavg's 1-, 5- and 15-minute load averages."""
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def run_ours(args, model):
    out = subprocess.run(
        [args.mlxrun, "bench", "--model", model, "--prompt-tokens", str(args.prompt),
         "--gen-tokens", str(args.gen), "--runs", "1", "--json"],
        check=True, capture_output=True, text=True).stdout
    v = json.loads(out)
    return v["prefill_tok_s"]["mean"], v["decode_tok_s"]["mean"]


def run_llama(args, model):
    # llama-bench runs the prompt (pp) and generation (tg) tests apart, each after its own
    # warm-up run; tg starts from an empty context.
    out = subprocess.run(
        [args.llama_bench, "-m", model, "-t", str(args.threads), "-p", str(args.prompt),
         "-n", str(args.gen), "-r", "1", "-o", "json"],
        check=True, capture_output=True, text=True).stdout
    tests = json.loads(out)
    pp = next(t["avg_ts"] for t in tests if t["n_prompt"] == args.prompt and t["n_gen"] == 0)
    tg = next(t["avg_ts"] for t in tests if t["n_gen"] == args.gen and t["n_prompt"] == 0)
    return pp, tg


class MlxLm:
    """mlx-lm in scripts/bench_worker.py, with OpenBLAS preloaded as the project's other
    benchmarks give it (else MLX's CPU matmuls use its reference BLAS, ~30x slower)."""

    def __init__(self, folder, openblas, prompt, gen):
        env = dict(os.environ)
        if openblas:
            env["LD_PRELOAD"] = openblas
            env["LD_LIBRARY_PATH"] = os.path.dirname(os.path.dirname(openblas))
        self.proc = subprocess.Popen([sys.executable, os.path.join(SCRIPTS, "bench_worker.py")], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.prompt, self.gen = prompt, gen
        self.request({"op": "load", "path": folder, "dtype": "float32"})
        self.run()  # warm-up: kernels, allocator

    def request(self, req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(f"mlx-lm: {reply['error']}")
        return reply

    def run(self):
        r = self.request({"op": "generate", "prompt_len": self.prompt, "gen": self.gen})
        return r["prefill_tok_s"], r["decode_tok_s"]

    def close(self):
        self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.proc.stdin.close()
        self.proc.wait()


def median_range(xs):
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}–{max(xs):.1f})"


def bench_model(args, label, model, mlx):
    engines = [("ours", lambda: run_ours(args, model)), ("llama.cpp", lambda: run_llama(args, model))]
    if mlx is not None:
        engines.append(("mlx-lm (f32 folder)", mlx.run))
    runs = {name: [] for name, _ in engines}
    loads = []
    for i in range(args.pairs):
        load = loadavg()
        loads.append(float(load[0]))
        print(f"{label}: round {i + 1}/{args.pairs}, load average {' '.join(load)}",
              file=sys.stderr, flush=True)
        k = i % len(engines)
        for name, fn in engines[k:] + engines[:k]:
            runs[name].append(fn())
            print(f"  {name}: prefill {runs[name][-1][0]:.1f}, decode {runs[name][-1][1]:.1f} tok/s",
                  file=sys.stderr, flush=True)
    rows = []
    ours = runs["ours"]
    for name, _ in engines:
        r = runs[name]
        pre, dec = [x[0] for x in r], [x[1] for x in r]
        if name == "ours":
            ratio = "", ""
        else:
            ratio = tuple(f"{statistics.median(o[j] / x[j] for o, x in zip(ours, r)):.2f}×" for j in (0, 1))
        rows.append(f"| {label} | {name} | {median_range(pre)} | {median_range(dec)} | {ratio[0]} | {ratio[1]} "
                    f"| {min(loads):.1f}–{max(loads):.1f} |")
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mlxrun", required=True)
    p.add_argument("--llama-bench", required=True)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--gen", type=int, default=64)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--mlx-lm-dir")
    p.add_argument("--openblas")
    p.add_argument("models", nargs="+", metavar="LABEL=FILE")
    args = p.parse_args()

    mlx = MlxLm(args.mlx_lm_dir, args.openblas, args.prompt, args.gen) if args.mlx_lm_dir else None
    rows = []
    for i, spec in enumerate(args.models):
        label, model = spec.split("=", 1)
        rows += bench_model(args, label, model, mlx if i == 0 else None)
    if mlx is not None:
        mlx.close()

    print(f"prompt {args.prompt} tokens, {args.gen} generated, {args.pairs} rounds; llama-bench -t {args.threads}; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    print()
    print("| model | engine | prefill tok/s, median (range) | decode tok/s, median (range) "
          "| ours / it, prefill | ours / it, decode | load average |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
