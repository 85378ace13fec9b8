package mlx_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mlx "mlxrun/bindings/go"
)

// Every method of a closed Model or Session returns ErrClosed (or an empty result with
// Err() = ErrClosed for the iterators) and touches no freed memory; Close twice is fine.
// TestCloseTwiceAndUseAfterClose covers generation, chat, sessions and the tokenizer;
// this covers the rest of the API (docs/reliability.md).
func TestEveryCallAfterCloseReturnsErrClosed(t *testing.T) {
	m := load(t, "qwen3")
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	// A session closed on its own, its model still open.
	if err := s.Close(); err != nil || s.Close() != nil {
		t.Fatalf("session Close twice: %v", err)
	}
	expectSessionClosed(t, s, "after its own Close")
	// The model is untouched by its session's close.
	if _, err := m.Tokenize("still works", true); err != nil {
		t.Fatalf("the model after its session's Close: %v", err)
	}

	if err := m.Close(); err != nil || m.Close() != nil {
		t.Fatalf("model Close twice: %v", err)
	}
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, mlx.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
	_, err = m.Classify(bg, []string{"hi"})
	check("Classify", err)
	_, err = m.BatchGenerate(bg, []string{"hi"})
	check("BatchGenerate", err)
	_, err = m.InspectAttention(bg, "hi")
	check("InspectAttention", err)
	cfg := mlx.DefaultLoRAConfig()
	_, err = m.ApplyLoRA(cfg)
	check("ApplyLoRA", err)
	check("SaveAdapter", m.SaveAdapter(filepath.Join(t.TempDir(), "a.safetensors")))
	check("LoadAdapter", m.LoadAdapter(t.TempDir()))
	check("RemoveAdapter", m.RemoveAdapter())
	_, err = m.Evaluate(bg, filepath.Join(t.TempDir(), "valid.jsonl"))
	check("Evaluate", err)
	for range m.Train(bg, t.TempDir()) {
		t.Error("Train on a closed model reported progress")
	}
	check("Train", m.Err())
	// What was read at load stays readable; the metrics are the last call's (none).
	if m.ModelType() != "qwen3" || m.Info().NumLayers == 0 {
		t.Errorf("Info after Close: %+v", m.Info())
	}
	_ = m.Metrics()
}

// Bad inputs through the binding: the status maps to the package's error values and the
// message names the problem (the C and Rust suites check each class in depth).
func TestBadInputsBecomeTypedErrors(t *testing.T) {
	m := load(t, "qwen3")

	// A path that is a file, a dangling symlink: a config error naming the path.
	dir := t.TempDir()
	file := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(file, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "gone"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, dangling} {
		if _, err := mlx.LoadModel(p); !errors.Is(err, mlx.ErrConfig) || !strings.Contains(err.Error(), p) {
			t.Errorf("LoadModel(%s): %v", p, err)
		}
	}

	// An absurd dimension in config.json: a config error naming the field and the value.
	src := fixture(t, "qwen3")
	bad := t.TempDir()
	b, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), `"num_hidden_layers": 3`, `"num_hidden_layers": 1000000000`, 1)
	if edited == string(b) {
		t.Fatal("config.json has no num_hidden_layers to edit")
	}
	if err := os.WriteFile(filepath.Join(bad, "config.json"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	// The tokenizer is read first; the weights are never reached.
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bad, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := mlx.LoadModel(bad); !errors.Is(err, mlx.ErrConfig) || !strings.Contains(err.Error(), "num_hidden_layers") || !strings.Contains(err.Error(), "1000000000") {
		t.Errorf("absurd num_hidden_layers: %v", err)
	}

	// Invalid UTF-8 (a Go string may hold any bytes) and interior NUL (a C string cannot):
	// invalid-argument errors, not truncated prompts.
	for _, p := range []string{"caf\xff", "a\x00b"} {
		var r mlx.Result
		if ids, _ := collect(m.Generate(bg, p, mlx.WithMaxTokens(2), mlx.WithResult(&r))); len(ids) != 0 || !errors.Is(r.Err, mlx.ErrInvalidArgument) {
			t.Errorf("Generate(%q): %v, %v", p, ids, r.Err)
		}
	}
	// The empty prompt (this tokenizer adds no BOS): an invalid-argument error.
	var r mlx.Result
	if ids, _ := collect(m.Generate(bg, "", mlx.WithResult(&r))); len(ids) != 0 || !errors.Is(r.Err, mlx.ErrInvalidArgument) || !strings.Contains(r.Err.Error(), "no tokens") {
		t.Errorf("empty prompt: %v, %v", ids, r.Err)
	}
	// A bad sampler value names the field.
	if ids, _ := collect(m.Generate(bg, prompt, mlx.WithTemperature(-1), mlx.WithResult(&r))); len(ids) != 0 || !errors.Is(r.Err, mlx.ErrInvalidArgument) || !strings.Contains(r.Err.Error(), "temperature") {
		t.Errorf("temperature -1: %v, %v", ids, r.Err)
	}
	// An empty prompt list: refused, as by the C API.
	if res, err := m.Classify(bg, nil); !errors.Is(err, mlx.ErrInvalidArgument) || !strings.Contains(err.Error(), "no prompts") {
		t.Errorf("Classify(nil): %v, %v", res, err)
	}
	if res, err := m.BatchGenerate(bg, []string{}); !errors.Is(err, mlx.ErrInvalidArgument) || !strings.Contains(err.Error(), "no prompts") {
		t.Errorf("BatchGenerate([]): %v, %v", res, err)
	}
	// And the model still generates.
	if ids, _ := collect(m.Generate(bg, prompt, mlx.WithMaxTokens(3))); len(ids) != 3 {
		t.Errorf("the model after bad inputs: %v", ids)
	}
}
