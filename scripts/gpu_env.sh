# Sourced by the GPU scripts (gpu_bench.sh, gpu_tp.sh) with B set to a bundle made by
# scripts/gpu_bundle.sh: installs its wheels into B/site once, points the loader at MLX's
# CUDA library and the CUDA libraries of PY's site-packages (a PyTorch install has them in
# nvidia/*/lib), and sets PY, M (the benchmark models' folder) and the benches' variables.
PY="${PYTHON:-python3}"
if [ ! -d "$B/site/mlx" ]; then
    "$PY" -m pip install -q --no-index --no-deps --target "$B/site" "$B"/wheels/*.whl
fi
NV=$("$PY" -c 'import site, glob; print(":".join(d for p in site.getsitepackages() for d in sorted(glob.glob(p + "/nvidia/*/lib"))))')
export LD_LIBRARY_PATH="$B/site/mlx/lib:$NV${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$B/site" PYTHONUNBUFFERED=1 MLXRUN_BENCH_PYTHON="$PY"
"$PY" -c 'import mlx.core as mx; print("MLX device:", mx.default_device())'
M="$B/models"
