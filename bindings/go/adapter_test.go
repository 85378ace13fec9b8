package mlx_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	mlx "mlxrun/bindings/go"
)

// mlx-lm's trained adapter (scripts/lora_refs.py) loads with WithAdapterPath and gives
// mlx-lm's greedy tokens with it; a missing or mismatched adapter fails the load.
func TestWithAdapterPathLoadsAnMLXLMAdapter(t *testing.T) {
	dir := repoPath(".deps/refs/lora/text")
	raw, err := os.ReadFile(filepath.Join(dir, "ref.json"))
	if err != nil {
		t.Fatalf("the LoRA references are missing (%v): run scripts/setup.sh", err)
	}
	var ref struct {
		Prompt string  `json:"prompt"`
		Greedy []int32 `json:"greedy_with_adapter"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	m := load(t, "qwen3", mlx.WithAdapterPath(filepath.Join(dir, "adapter")))
	ids, _ := collect(m.Generate(bg, ref.Prompt, mlx.WithMaxTokens(len(ref.Greedy))))
	if !equalIDs(ids, ref.Greedy) {
		t.Fatalf("greedy ids with mlx-lm's adapter: %v, mlx-lm %v", ids, ref.Greedy)
	}

	_, err = mlx.LoadModel(fixture(t, "qwen3"), mlx.WithAdapterPath("/nonexistent/adapter"))
	wantStatus(t, err, mlx.ErrIO, mlx.StatusIO, "/nonexistent/adapter")
	_, err = mlx.LoadModel(fixture(t, "llama3"), mlx.WithAdapterPath(filepath.Join(dir, "adapter")))
	wantStatus(t, err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "num_layers 3", "2 layers")
}
