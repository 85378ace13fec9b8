"""mlx-lm's greedy tokens and logits on real models, for the real-model suite
(scripts/test_real_models.sh, tests/gguf_gemma3.rs).

Usage: real_model_refs.py MODEL_DIR OUT_DIR

MODEL_DIR is an HF folder that `mlxrun convert` made from a GGUF file (float32 weights: the
file's k-quants dequantized). mlx-lm runs the prompts of scripts/reference_outputs.py on it,
with the same OpenBLAS the engine links, and the outputs go to
OUT_DIR/<folder name>.safetensors/.json in that script's format; the test then loads the
GGUF file itself and must give the same tokens and logits within the float32 tolerance.

A GGUF file need not carry a chat template (Gemma 3 270M's does not); then the chat prompt
is left out rather than rendered with a template the model never had.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_outputs as ro  # noqa: E402  (re-executes with OpenBLAS preloaded first)


def prompts_without_chat(tokenizer):
    """reference_outputs.prompts, minus the chat prompt when the model has no template."""
    if getattr(tokenizer, "chat_template", None) is not None:
        return PROMPTS(tokenizer)

    class NoTemplate:
        def apply_chat_template(self, *args, **kwargs):
            return ""

    return [(name, text) for name, text in PROMPTS(NoTemplate()) if name != "chat"]


PROMPTS = ro.prompts


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    ro.prompts = prompts_without_chat
    ro.run_fixture(model, out)


if __name__ == "__main__":
    main()
