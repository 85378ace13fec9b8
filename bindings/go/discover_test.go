package mlx_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	mlx "mlxrun/bindings/go"
)

// linkModel makes dst a folder of links to src's files, leaving out skip.
func linkModel(t *testing.T, src, dst string, skip ...string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || slices.Contains(skip, e.Name()) {
			continue
		}
		if err := os.Symlink(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// qwen3Params is the parameter count of a Qwen3 model from its config.json's sizes
// (tied embeddings, per-head q/k norms), computed apart from the library.
func qwen3Params(t *testing.T, dir string) int64 {
	var c struct {
		Vocab   int64 `json:"vocab_size"`
		Hidden  int64 `json:"hidden_size"`
		Layers  int64 `json:"num_hidden_layers"`
		Heads   int64 `json:"num_attention_heads"`
		KV      int64 `json:"num_key_value_heads"`
		HeadDim int64 `json:"head_dim"`
		Inter   int64 `json:"intermediate_size"`
		Tied    bool  `json:"tie_word_embeddings"`
	}
	readJSON(t, filepath.Join(dir, "config.json"), &c)
	if !c.Tied {
		t.Fatalf("%s: the formula here is for tied embeddings", dir)
	}
	layer := 2*c.Hidden*c.Heads*c.HeadDim + 2*c.Hidden*c.KV*c.HeadDim + 3*c.Hidden*c.Inter + 2*c.Hidden + 2*c.HeadDim
	return c.Vocab*c.Hidden + c.Layers*layer + c.Hidden
}

func TestDiscover(t *testing.T) {
	qwen3 := fixture(t, "qwen3")
	q4 := repoPath(".deps/fixtures-quant/qwen3-q4g64")
	gguf := repoPath(".deps/models/SmolLM2-135M-Instruct.Q4_1.gguf")
	for _, p := range []string{q4, gguf} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing (%v): run scripts/setup.sh", p, err)
		}
	}
	base := t.TempDir()
	linkModel(t, qwen3, filepath.Join(base, "org", "qwen3"))
	linkModel(t, q4, filepath.Join(base, "org", "qwen3-q4"))
	linkModel(t, qwen3, filepath.Join(base, "broken"), "model.safetensors")
	if err := os.MkdirAll(filepath.Join(base, "gguf"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(gguf, filepath.Join(base, "gguf", "smollm2.gguf")); err != nil {
		t.Fatal(err)
	}
	// A link back to the top: searched once, not forever.
	if err := os.Symlink(base, filepath.Join(base, "org", "loop")); err != nil {
		t.Fatal(err)
	}

	var found []mlx.DiscoveredModel
	for m := range mlx.Discover(base) {
		found = append(found, m)
	}
	var paths []string
	for _, m := range found {
		paths = append(paths, m.Path)
	}
	want := []string{
		filepath.Join(base, "broken"),
		filepath.Join(base, "gguf", "smollm2.gguf"),
		filepath.Join(base, "org", "qwen3"),
		filepath.Join(base, "org", "qwen3-q4"),
	}
	if !slices.Equal(paths, want) {
		t.Fatalf("found %q, want %q", paths, want)
	}

	broken, g, dense, quant := found[0], found[1], found[2], found[3]
	if !strings.Contains(broken.Error, "no *.safetensors weights") || !strings.Contains(broken.Error, "broken") {
		t.Errorf("broken model's error: %q", broken.Error)
	}
	if broken.ModelType != "qwen3" || broken.CanLoad("native") || broken.Params != 0 {
		t.Errorf("broken model: %+v", broken)
	}

	wantParams := qwen3Params(t, qwen3)
	if dense.Error != "" || dense.ModelType != "qwen3" || dense.Format != "safetensors" || dense.Params != wantParams {
		t.Errorf("dense model: %+v (want %d params)", dense, wantParams)
	}
	if dense.QuantBits != 0 || dense.QuantMode != "" || dense.Dtype != "float32" || dense.NumFiles != 1 {
		t.Errorf("dense model: %+v", dense)
	}
	if !dense.HasTokenizer || !dense.HasChatTemplate || dense.SizeBytes <= dense.Params*4 {
		t.Errorf("dense model: %+v", dense)
	}
	if len(dense.Backends) == 0 || dense.Backends[0].Name != "native" || !dense.Backends[0].OK || !dense.CanLoad("native") {
		t.Errorf("dense model's backends: %+v", dense.Backends)
	}

	// mlx-lm's converter recorded the quantized fixture's parameter count, unpacked.
	var index struct {
		Metadata struct {
			TotalParameters int64 `json:"total_parameters"`
		} `json:"metadata"`
	}
	readJSON(t, filepath.Join(q4, "model.safetensors.index.json"), &index)
	if quant.Params != index.Metadata.TotalParameters || quant.Params != wantParams {
		t.Errorf("quantized params %d, mlx-lm says %d, dense %d", quant.Params, index.Metadata.TotalParameters, wantParams)
	}
	if quant.QuantBits != 4 || quant.QuantGroup != 64 || quant.QuantMode != "affine" || quant.QuantType != "" {
		t.Errorf("quantized model: %+v", quant)
	}
	if quant.SizeBytes >= dense.SizeBytes {
		t.Errorf("the 4-bit copy (%d bytes) is not smaller than the dense one (%d)", quant.SizeBytes, dense.SizeBytes)
	}

	if g.Format != "gguf" || g.ModelType != "llama" || g.Dtype != "Q4_1" || g.NumFiles != 1 || g.Error != "" {
		t.Errorf("GGUF model: %+v", g)
	}
	if g.QuantBits != 4 || g.QuantGroup != 32 || g.QuantType != "q4_1" || g.QuantFamily != "q4" || g.QuantMode != "q4_1" {
		t.Errorf("GGUF quantization: %+v", g)
	}
	st, err := os.Stat(gguf)
	if err != nil {
		t.Fatal(err)
	}
	if g.SizeBytes != st.Size() || g.Params < 100_000_000 || !g.HasTokenizer || !g.HasChatTemplate {
		t.Errorf("GGUF model: %+v (file of %d bytes)", g, st.Size())
	}
	if g.CanLoad("mlx_lm") || !g.CanLoad("native") {
		t.Errorf("GGUF backends: %+v", g.Backends)
	}

	// Breaking out of the loop stops the search's delivery.
	n := 0
	for range mlx.Discover(base) {
		n++
		break
	}
	if n != 1 {
		t.Errorf("break: %d models delivered", n)
	}

	// Depth: level 0 is base itself (no model), level 1 has broken/.
	if all, err := mlx.DiscoverAll(base, mlx.WithMaxDepth(0)); err != nil || len(all) != 0 {
		t.Errorf("depth 0: %v, %v", all, err)
	}
	if all, err := mlx.DiscoverAll(base, mlx.WithMaxDepth(1)); err != nil || len(all) != 2 {
		t.Errorf("depth 1: %d models, %v", len(all), err)
	}

	// Searches from several goroutines at once (go test -race watches them).
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			all, err := mlx.DiscoverAll(base)
			if err != nil || len(all) != len(want) {
				t.Errorf("concurrent DiscoverAll: %d models, %v", len(all), err)
			}
		}()
	}
	wg.Wait()
}

func TestDiscoverErrors(t *testing.T) {
	_, err := mlx.DiscoverAll("/nonexistent/models")
	wantStatus(t, err, mlx.ErrIO, mlx.StatusIO, "/nonexistent/models")

	// Discover reports the failure as the one entry it yields.
	var found []mlx.DiscoveredModel
	for m := range mlx.Discover("/nonexistent/models") {
		found = append(found, m)
	}
	if len(found) != 1 || found[0].Path != "/nonexistent/models" || !strings.Contains(found[0].Error, "/nonexistent/models") || found[0].Format != "" {
		t.Errorf("Discover of a missing folder: %+v", found)
	}

	_, err = mlx.DiscoverAll(filepath.Join(fixture(t, "qwen3"), "config.json"))
	wantStatus(t, err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "not a folder")
	_, err = mlx.DiscoverAll(t.TempDir(), mlx.WithMaxDepth(-1))
	if !errors.Is(err, mlx.ErrInvalidArgument) {
		t.Errorf("negative depth: %v", err)
	}
	_, err = mlx.DiscoverAll("bad\x00dir")
	wantStatus(t, err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "NUL")
}
