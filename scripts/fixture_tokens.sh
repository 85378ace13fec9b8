#!/usr/bin/env bash
# Greedy float32 tokens of the fixtures, one line per fixture: run on a GPU machine and on the
# CPU, the two outputs must be equal (the fixtures are byte-identical wherever
# scripts/make_fixtures.py writes them, and float32 leaves no room for bf16 rounding).
# Usage: scripts/fixture_tokens.sh MLXRUN FIXTURES_DIR
set -euo pipefail
MLXRUN="${1:?usage: fixture_tokens.sh MLXRUN FIXTURES_DIR}"
DIR="${2:?usage: fixture_tokens.sh MLXRUN FIXTURES_DIR}"
PROMPT="The quick brown fox jumps over the lazy dog. Once upon a time"
for f in llama3 qwen3 qwen2 gemma3; do
    printf '%s ' "$f"
    "$MLXRUN" generate --model "$DIR/$f" --dtype float32 --prompt "$PROMPT" --max-tokens 48 --ignore-eos --json 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["tokens"])'
done
