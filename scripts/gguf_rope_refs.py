"""A GGUF file with per-frequency rotary factors (`rope_freqs.weight`), as llama.cpp's
converter writes Llama 3.1 and later models, for tests/gguf.rs.

Usage: gguf_rope_refs.py FIXTURES_DIR OUT_DIR

Writes OUT_DIR/fixture-llama3-rope-freqs.gguf: the llama3 fixture (scripts/make_fixtures.py,
`rope_scaling` of type llama3) written by scripts/gguf_refs.py's fixture_as_gguf, plus the
tensor `rope_freqs.weight` computed from the fixture's config exactly as
convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors does (float32 frequencies, the
original context length read from the top level of the config, 8192 when absent there).
The llama3 `rope_scaling` itself is not written as metadata, as llama.cpp does not.

mlx-lm's outputs on the fixture folder (.deps/refs/generate/llama3) are the reference: the
test checks that `mlxrun convert` gives that folder's weights and scaling back.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gguf_refs  # noqa: E402  (re-executes with OpenBLAS preloaded first)

import gguf  # noqa: E402

FIXTURE = "llama3"
OUT_NAME = "fixture-llama3-rope-freqs.gguf"


def rope_factors(cfg):
    """llama.cpp's LlamaModel.generate_extra_tensors, in numpy float32 for torch's."""
    scaling = cfg["rope_scaling"]
    assert scaling.get("rope_type", "").lower() == "llama3", scaling
    base = cfg.get("rope_theta", 10000.0)
    dim = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    freqs = (1.0 / (np.float32(base) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))).astype(np.float32)
    factor = scaling.get("factor", 8.0)
    low = scaling.get("low_freq_factor", 1.0)
    high = scaling.get("high_freq_factor", 4.0)
    old = cfg.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = np.float32(2 * math.pi) / freq
        if wavelen < high_wavelen:
            out.append(1)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    fixtures, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    fixture = fixtures / FIXTURE
    factors = rope_factors(json.loads((fixture / "config.json").read_text()))

    class WithRopeFactors(gguf.GGUFWriter):
        """The converter adds rope_freqs.weight beside the other tensors."""

        def write_header_to_file(self, *args, **kwargs):
            self.add_tensor("rope_freqs.weight", factors)
            return super().write_header_to_file(*args, **kwargs)

    gguf_refs.gguf.GGUFWriter = WithRopeFactors
    gguf_refs.fixture_as_gguf(fixture, out / OUT_NAME)
    print(f"{OUT_NAME}: rope_freqs.weight = {factors.tolist()}")


if __name__ == "__main__":
    main()
