package mlx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	mlx "mlxrun/bindings/go"
)

// LoRA training through Go against mlx-lm's trainer (scripts/lora_refs.py, the same
// references tests/train.rs uses): the fixture, data, initial adapter and settings give
// mlx-lm's loss at every step, which shows that every setting reaches the library.

// loraRef is .deps/refs/lora/<case>/ref.json.
type loraRef struct {
	Format     string `json:"format"`
	MaskPrompt bool   `json:"mask_prompt"`
	Lora       struct {
		Rank  int      `json:"rank"`
		Scale float32  `json:"scale"`
		Keys  []string `json:"keys"`
	} `json:"lora"`
	NumLayers    int     `json:"num_layers"`
	LearningRate float32 `json:"learning_rate"`
	Steps        int     `json:"steps"`
	Train        []struct {
		Iteration int     `json:"iteration"`
		Loss      float64 `json:"loss"`
	} `json:"train"`
	Val []struct {
		Iteration int     `json:"iteration"`
		Loss      float64 `json:"loss"`
	} `json:"val"`
	Prompt string  `json:"prompt"`
	Greedy []int32 `json:"greedy_with_adapter"`
}

func readLoraRef(t testing.TB, name string) (string, loraRef) {
	t.Helper()
	dir := repoPath(".deps/refs/lora/" + name)
	raw, err := os.ReadFile(filepath.Join(dir, "ref.json"))
	if err != nil {
		t.Fatalf("the LoRA references are missing (%v): run scripts/setup.sh", err)
	}
	var r loraRef
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return dir, r
}

// dataDir is a dataset folder of tests/data/lora.
func dataDir(format string) string { return repoPath("tests/data/lora/" + format) }

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func within(t testing.TB, what string, got, want, rtol float64) {
	t.Helper()
	if !(math.Abs(got-want) <= rtol*math.Abs(want)) {
		t.Fatalf("%s: got %v, mlx-lm %v (rtol %g)", what, got, want, rtol)
	}
}

// greedy is n greedy tokens of text.
func greedy(t testing.TB, m *mlx.Model, text string, n int) []int32 {
	t.Helper()
	ids, _ := collect(m.Generate(bg, text, mlx.WithMaxTokens(n)))
	if err := m.Err(); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return ids
}

// trainAll ranges over a training and returns its reports.
func trainAll(m *mlx.Model, ctx context.Context, data string, opts ...mlx.TrainOption) []mlx.TrainProgress {
	var seen []mlx.TrainProgress
	for p := range m.Train(ctx, data, opts...) {
		seen = append(seen, p)
	}
	return seen
}

func ofKind(ps []mlx.TrainProgress, k mlx.ProgressKind) []mlx.TrainProgress {
	var out []mlx.TrainProgress
	for _, p := range ps {
		if p.Kind == k {
			out = append(out, p)
		}
	}
	return out
}

// The reference's settings through Go — rank 4, scale 10, q/v on the last 3 layers, the
// reference's initial adapter, Adam at its learning rate, batch 4, prompt masking, a
// report every step, validation before the first and the last step — give mlx-lm's
// loss at each of the 20 steps and both validation losses within 1e-4 relative.
// Evaluate on the validation file before training gives mlx-lm's first validation loss.
func TestTrainMatchesMLXLMLosses(t *testing.T) {
	refDir, ref := readLoraRef(t, "completions-masked")
	m := load(t, "qwen3")
	info := m.Info()

	// The initial adapter: ApplyLoRA with the reference's shape, saved, its weights
	// replaced by the reference's, and loaded back.
	ad, err := m.ApplyLoRA(mlx.LoRAConfig{Rank: ref.Lora.Rank, Scale: ref.Lora.Scale, NumLayers: ref.NumLayers, TargetKeys: ref.Lora.Keys})
	if err != nil {
		t.Fatalf("ApplyLoRA: %v", err)
	}
	r := ref.Lora.Rank
	perLayer := r*(info.HiddenSize+info.NumHeads*info.HeadDim) + r*(info.HiddenSize+info.NumKVHeads*info.HeadDim)
	if ad.TotalParams() != ref.NumLayers*perLayer {
		t.Fatalf("TotalParams %d, want %d", ad.TotalParams(), ref.NumLayers*perLayer)
	}
	if c := ad.Config(); c.Scale != ref.Lora.Scale || c.Rank != r {
		t.Fatalf("Config %+v", c)
	}
	initDir := filepath.Join(t.TempDir(), "init")
	if err := ad.Save(initDir); err != nil {
		t.Fatalf("Save: %v", err)
	}
	var saved struct {
		NumLayers int `json:"num_layers"`
		Params    struct {
			Rank  int      `json:"rank"`
			Scale float32  `json:"scale"`
			Keys  []string `json:"keys"`
		} `json:"lora_parameters"`
	}
	raw, err := os.ReadFile(filepath.Join(initDir, "adapter_config.json"))
	if err != nil || json.Unmarshal(raw, &saved) != nil {
		t.Fatalf("adapter_config.json: %v %s", err, raw)
	}
	if saved.NumLayers != ref.NumLayers || saved.Params.Rank != r || saved.Params.Scale != ref.Lora.Scale ||
		strings.Join(saved.Params.Keys, ",") != strings.Join(ref.Lora.Keys, ",") {
		t.Fatalf("saved adapter_config.json %s does not carry the reference's settings", raw)
	}
	copyFile(t, filepath.Join(refDir, "init.safetensors"), filepath.Join(initDir, "adapters.safetensors"))
	if err := m.RemoveAdapter(); err != nil {
		t.Fatal(err)
	}
	if err := ad.Save(t.TempDir()); !errors.Is(err, mlx.ErrInvalidArgument) {
		t.Fatalf("Save of a removed adapter: %v", err)
	}
	if err := m.LoadAdapter(initDir); err != nil {
		t.Fatalf("LoadAdapter: %v", err)
	}

	valid := filepath.Join(dataDir(ref.Format), "valid.jsonl")
	before, err := m.Evaluate(bg, valid, mlx.WithMaskPrompt(), mlx.WithTrainBatchSize(4))
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	within(t, "Evaluate before training", before, ref.Val[0].Loss, 1e-4)

	out := filepath.Join(t.TempDir(), "adapter")
	seen := trainAll(m, bg, dataDir(ref.Format),
		mlx.WithIters(ref.Steps), mlx.WithTrainBatchSize(4), mlx.WithOptimizer(mlx.OptimizerAdam),
		mlx.WithLearningRate(ref.LearningRate), mlx.WithStepsPerReport(1), mlx.WithStepsPerEval(ref.Steps),
		mlx.WithValBatches(-1), mlx.WithSaveEvery(0), mlx.WithMaskPrompt(), mlx.WithAdapterDir(out))
	if err := m.Err(); err != nil {
		t.Fatalf("Train: %v", err)
	}
	train := ofKind(seen, mlx.ProgressTrain)
	if len(train) != len(ref.Train) {
		t.Fatalf("%d train reports, mlx-lm %d", len(train), len(ref.Train))
	}
	for i, p := range train {
		w := ref.Train[i]
		if p.Step != w.Iteration {
			t.Fatalf("report %d is step %d, mlx-lm %d", i, p.Step, w.Iteration)
		}
		within(t, "step loss", p.TrainLoss, w.Loss, 1e-4)
		within(t, "learning rate", p.LearningRate, float64(ref.LearningRate), 1e-6)
		if p.TrainedTokens <= 0 || p.TokensPerSec <= 0 || p.ItersPerSec <= 0 || p.PeakMemoryBytes == 0 || p.ValLoss != 0 {
			t.Fatalf("report %+v", p)
		}
	}
	if train[len(train)-1].TrainedTokens <= train[0].TrainedTokens {
		t.Fatalf("trained tokens do not grow: %+v … %+v", train[0], train[len(train)-1])
	}
	val := ofKind(seen, mlx.ProgressVal)
	if len(val) != len(ref.Val) {
		t.Fatalf("%d validations, mlx-lm %d", len(val), len(ref.Val))
	}
	for i, p := range val {
		if p.Step != ref.Val[i].Iteration {
			t.Fatalf("validation %d after step %d, mlx-lm %d", i, p.Step, ref.Val[i].Iteration)
		}
		within(t, "validation loss", p.ValLoss, ref.Val[i].Loss, 1e-4)
	}
	sv := ofKind(seen, mlx.ProgressSaved)
	if len(sv) != 1 || sv[0].Step != ref.Steps || sv[0].Path != filepath.Join(out, "adapters.safetensors") {
		t.Fatalf("saved reports %+v", sv)
	}
	if _, err := os.Stat(sv[0].Path); err != nil {
		t.Fatal(err)
	}
	after, err := m.Evaluate(bg, valid, mlx.WithMaskPrompt(), mlx.WithTrainBatchSize(4), mlx.WithTestBatches(1))
	if err != nil || math.IsNaN(after) || math.IsInf(after, 0) || after >= before {
		t.Fatalf("Evaluate after training: %v, %v (before: %v)", after, err, before)
	}
}

// Cancelling ctx from the loop body stops training before the next step with
// context.Canceled; the last checkpoint stays whole and loads; the model stays usable.
// A cancel from another goroutine while the library computes stops it too, and a break
// stops it with no error.
func TestTrainCancelKeepsTheCheckpoint(t *testing.T) {
	m := load(t, "qwen3")
	if _, err := m.ApplyLoRA(mlx.DefaultLoRAConfig()); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	opts := []mlx.TrainOption{mlx.WithIters(1000), mlx.WithSaveEvery(2), mlx.WithStepsPerReport(1),
		mlx.WithLearningRate(1e-3), mlx.WithMaskPrompt(), mlx.WithAdapterDir(dir)}
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	lastSaved, afterCancel := 0, 0
	for p := range m.Train(ctx, dataDir("completions"), opts...) {
		if ctx.Err() != nil {
			afterCancel++
		}
		if p.Kind == mlx.ProgressSaved {
			lastSaved = p.Step
			if p.Step >= 4 {
				cancel()
			}
		}
	}
	if err := m.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err after cancel: %v", err)
	}
	if lastSaved != 4 || afterCancel != 0 {
		t.Fatalf("last checkpoint at step %d, %d reports after the cancel", lastSaved, afterCancel)
	}
	final, err := os.ReadFile(filepath.Join(dir, "adapters.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	numbered, err := os.ReadFile(filepath.Join(dir, "0000004_adapters.safetensors"))
	if err != nil || !bytes.Equal(final, numbered) {
		t.Fatalf("adapters.safetensors is not step 4's checkpoint (%v)", err)
	}
	reloaded := load(t, "qwen3", mlx.WithAdapterPath(dir))
	if ids := greedy(t, reloaded, prompt, 4); len(ids) == 0 {
		t.Fatal("no tokens with the checkpoint")
	}
	if ids := greedy(t, m, prompt, 4); len(ids) == 0 {
		t.Fatal("no tokens after the cancelled training")
	}

	// From another goroutine, while the library computes.
	ctx2, cancel2 := context.WithCancel(bg)
	defer cancel2()
	steps := 0
	for p := range m.Train(ctx2, dataDir("completions"), mlx.WithIters(1000), mlx.WithStepsPerReport(1), mlx.WithMaskPrompt()) {
		if p.Kind == mlx.ProgressTrain {
			steps++
			if steps == 2 {
				go cancel2()
			}
		}
	}
	if err := m.Err(); !errors.Is(err, context.Canceled) || steps >= 1000 {
		t.Fatalf("after a cancel from another goroutine: Err %v, %d steps", err, steps)
	}

	// A break: no error, no more steps.
	steps = 0
	for p := range m.Train(bg, dataDir("completions"), mlx.WithIters(1000), mlx.WithStepsPerReport(1), mlx.WithMaskPrompt()) {
		if p.Kind == mlx.ProgressTrain {
			steps++
			if steps == 3 {
				break
			}
		}
	}
	if err := m.Err(); err != nil || steps != 3 {
		t.Fatalf("after a break: Err %v, %d steps", err, steps)
	}

	// A context cancelled before the range: nothing runs.
	for range m.Train(ctx, dataDir("completions")) {
		t.Fatal("a report from a cancelled context")
	}
	if err := m.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err with a cancelled context: %v", err)
	}
}

// Close from the loop body stops training with ErrClosed.
func TestTrainStoppedByClose(t *testing.T) {
	m, err := mlx.LoadTrainable(fixture(t, "qwen3"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.ApplyLoRA(mlx.DefaultLoRAConfig()); err != nil {
		t.Fatal(err)
	}
	steps := 0
	for p := range m.Train(bg, dataDir("completions"), mlx.WithIters(1000), mlx.WithStepsPerReport(1), mlx.WithMaskPrompt()) {
		if p.Kind == mlx.ProgressTrain {
			steps++
			if steps == 2 {
				m.Close()
			}
		}
	}
	if err := m.Err(); !errors.Is(err, mlx.ErrClosed) || steps != 2 {
		t.Fatalf("after Close: Err %v, %d steps", err, steps)
	}
	if _, err := m.ApplyLoRA(mlx.DefaultLoRAConfig()); !errors.Is(err, mlx.ErrClosed) {
		t.Fatalf("ApplyLoRA after Close: %v", err)
	}
}

// A trained adapter, saved (as a folder, as a .safetensors file, and by training's own
// checkpoint) and loaded again, gives the trained model's greedy tokens; removing it
// gives the base model's.
func TestTrainedAdapterSavesAndReloads(t *testing.T) {
	m := load(t, "qwen3")
	if m.NumLayers() != m.Info().NumLayers || m.NumLayers() != 3 {
		t.Fatalf("NumLayers %d", m.NumLayers())
	}
	base := greedy(t, m, prompt, 12)
	ad, err := m.ApplyLoRA(mlx.LoRAConfig{Rank: 8, Alpha: 16, TargetKeys: []string{"q_proj", "v_proj", "down_proj"}})
	if err != nil {
		t.Fatal(err)
	}
	if c := ad.Config(); c.Scale != 2 {
		t.Fatalf("scale %v, want alpha / rank = 2", c.Scale)
	}
	trainedDir := filepath.Join(t.TempDir(), "trained")
	seen := trainAll(m, bg, dataDir("chat"), mlx.WithIters(12), mlx.WithLearningRate(1e-2), mlx.WithStepsPerReport(1),
		mlx.WithMaskPrompt(), mlx.WithAdapterDir(trainedDir), mlx.WithOptimizer(mlx.OptimizerAdamW), mlx.WithWarmup(2),
		mlx.WithCosineDecay(9, 1e-3), mlx.WithGradCheckpoint(), mlx.WithTrainSeed(7))
	if err := m.Err(); err != nil {
		t.Fatalf("Train: %v", err)
	}
	train := ofKind(seen, mlx.ProgressTrain)
	if len(train) != 12 || train[len(train)-1].TrainLoss >= train[0].TrainLoss {
		t.Fatalf("training did not lower the loss: %+v", train)
	}
	// The warmup starts at 0 and rises; the decay ends at lr_end.
	if !(train[0].LearningRate < train[1].LearningRate) || math.Abs(train[11].LearningRate-1e-3) > 1e-6 {
		t.Fatalf("learning rates %v, %v … %v", train[0].LearningRate, train[1].LearningRate, train[11].LearningRate)
	}
	trained := greedy(t, m, prompt, 12)

	folder := filepath.Join(t.TempDir(), "folder")
	if err := ad.Save(folder); err != nil {
		t.Fatalf("Save(folder): %v", err)
	}
	file := filepath.Join(t.TempDir(), "file", "adapters.safetensors")
	if err := ad.Save(file); err != nil {
		t.Fatalf("Save(file): %v", err)
	}
	for _, dir := range []string{folder, filepath.Dir(file), trainedDir} {
		r := load(t, "qwen3", mlx.WithAdapterPath(dir))
		if got := greedy(t, r, prompt, 12); !equalIDs(got, trained) {
			t.Fatalf("%s: greedy %v, in memory %v", dir, got, trained)
		}
	}
	other := load(t, "qwen3")
	if err := other.LoadAdapter(folder); err != nil {
		t.Fatal(err)
	}
	if got := greedy(t, other, prompt, 12); !equalIDs(got, trained) {
		t.Fatalf("LoadAdapter: greedy %v, in memory %v", got, trained)
	}
	if err := other.SaveAdapter(filepath.Join(t.TempDir(), "again")); err != nil {
		t.Fatalf("SaveAdapter of a loaded adapter: %v", err)
	}

	if err := m.RemoveAdapter(); err != nil {
		t.Fatal(err)
	}
	if got := greedy(t, m, prompt, 12); !equalIDs(got, base) {
		t.Fatalf("without the adapter: %v, base model %v", got, base)
	}
	wantStatus(t, m.SaveAdapter(t.TempDir()), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "no adapter")
	wantStatus(t, ad.Save(t.TempDir()), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "no longer on the model")

	// LoRAConfig.Seed fixes the initial weights: the same seed on another model gives the
	// same adapter file, another seed a different one.
	initial := func(m *mlx.Model, seed uint64) []byte {
		t.Helper()
		if err := m.RemoveAdapter(); err != nil {
			t.Fatal(err)
		}
		a, err := m.ApplyLoRA(mlx.LoRAConfig{Rank: 4, Alpha: 8, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := a.Save(dir); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "adapters.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	a, b, c := initial(m, 3), initial(other, 3), initial(m, 4)
	if !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Fatalf("seeded initial adapters: seed 3 twice equal %v, seeds 3 and 4 equal %v", bytes.Equal(a, b), bytes.Equal(a, c))
	}
}

// Bad LoRA settings, training options and data are refused with an *Error naming them.
func TestLoRAAndTrainErrors(t *testing.T) {
	m := load(t, "qwen3")
	wantStatus(t, collectErr(m, bg, dataDir("completions")), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "no adapter")

	bad := func(cfg mlx.LoRAConfig, needles ...string) {
		t.Helper()
		_, err := m.ApplyLoRA(cfg)
		wantStatus(t, err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, needles...)
	}
	bad(mlx.LoRAConfig{Rank: 0, Alpha: 16}, "rank", "0")
	bad(mlx.LoRAConfig{Rank: 8, Alpha: 16, TargetKeys: []string{"q_proj", "foo_proj"}}, "foo_proj")
	bad(mlx.LoRAConfig{Rank: 8, Alpha: 16, NumLayers: 9}, "num_layers 9")
	bad(mlx.LoRAConfig{Rank: 8, Alpha: 16, Dropout: 1.5}, "dropout")
	bad(mlx.LoRAConfig{Rank: 8}, "Alpha", "Scale")
	bad(mlx.LoRAConfig{Rank: 8, Alpha: 16, Scale: 10}, "disagrees")
	bad(mlx.LoRAConfig{Rank: 8, Alpha: 16, BFloat16: true}, "bfloat16", "float32", "WithDType")
	bad(mlx.LoRAConfig{Rank: 8, Alpha: 16, DType: mlx.Float16}, "float16", "WithDType")
	if _, err := m.ApplyLoRA(mlx.LoRAConfig{Rank: 8, Scale: 20, DType: mlx.Float32}); err != nil {
		t.Fatalf("ApplyLoRA after refused configs: %v", err)
	}
	bad(mlx.DefaultLoRAConfig(), "already has an adapter")

	wantStatus(t, collectErr(m, bg, "/nonexistent/data"), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "/nonexistent/data")
	broken := t.TempDir()
	lines := `{"prompt": "What colour is the sky on Zorbia?", "completion": "Green."}` + "\n" +
		`{"prompt": "Who founded Quellport?", "completion": ` + "\n"
	if err := os.WriteFile(filepath.Join(broken, "train.jsonl"), []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, collectErr(m, bg, broken), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "train.jsonl:2")
	wantStatus(t, collectErr(m, bg, dataDir("text"), mlx.WithMaskPrompt()), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "train.jsonl")
	wantStatus(t, collectErr(m, bg, dataDir("completions"), mlx.WithTrainBatchSize(0)), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "batch_size")
	wantStatus(t, collectErr(m, bg, dataDir("completions"), mlx.WithIters(-1)), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "iters -1")
	wantStatus(t, collectErr(m, bg, dataDir("completions"), mlx.WithValBatches(0)), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "val_batches")
	wantStatus(t, collectErr(m, bg, dataDir("completions"), mlx.WithOptimizer(mlx.Optimizer(9))), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "optimizer")
	wantStatus(t, collectErr(m, bg, dataDir("completions"), mlx.WithTrainBatchSize(5)), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "train.jsonl")

	_, err := m.Evaluate(bg, "/nonexistent/test.jsonl")
	wantStatus(t, err, mlx.ErrIO, mlx.StatusIO, "/nonexistent/test.jsonl")
	_, err = m.Evaluate(bg, filepath.Join(broken, "train.jsonl"))
	wantStatus(t, err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "train.jsonl:2")
	_, err = m.Evaluate(bg, filepath.Join(dataDir("completions"), "valid.jsonl"), mlx.WithTestBatches(0))
	wantStatus(t, err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "num_batches")
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	if _, err := m.Evaluate(cancelled, filepath.Join(dataDir("completions"), "valid.jsonl")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Evaluate with a cancelled context: %v", err)
	}

	wantStatus(t, m.LoadAdapter(t.TempDir()), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "already has an adapter")
	if err := m.RemoveAdapter(); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveAdapter(); err != nil {
		t.Fatalf("RemoveAdapter without an adapter: %v", err)
	}
	err = m.LoadAdapter("/nonexistent/adapter")
	wantStatus(t, err, mlx.ErrIO, mlx.StatusIO, "/nonexistent/adapter")
}

// collectErr runs a training to its end and returns its error.
func collectErr(m *mlx.Model, ctx context.Context, data string, opts ...mlx.TrainOption) error {
	trainAll(m, ctx, data, opts...)
	return m.Err()
}

// Fuse writes the base with mlx-lm's trained adapter fused in; the fused model gives the
// greedy tokens mlx-lm gives with the adapter.
func TestFuseAdapter(t *testing.T) {
	refDir, ref := readLoraRef(t, "completions-masked")
	out := filepath.Join(t.TempDir(), "fused")
	n, err := mlx.Fuse(fixture(t, "qwen3"), filepath.Join(refDir, "adapter"), out)
	if err != nil {
		t.Fatalf("Fuse: %v", err)
	}
	if n != ref.NumLayers*len(ref.Lora.Keys) {
		t.Fatalf("fused %d projections, want %d", n, ref.NumLayers*len(ref.Lora.Keys))
	}
	fused, err := mlx.LoadModel(out)
	if err != nil {
		t.Fatalf("LoadModel(fused): %v", err)
	}
	defer fused.Close()
	if got := greedy(t, fused, ref.Prompt, len(ref.Greedy)); !equalIDs(got, ref.Greedy) {
		t.Fatalf("fused greedy %v, mlx-lm with the adapter %v", got, ref.Greedy)
	}
	_, err = mlx.Fuse(fixture(t, "qwen3"), "/nonexistent/adapter", t.TempDir())
	wantStatus(t, err, mlx.ErrIO, mlx.StatusIO, "/nonexistent/adapter")
}

// Encode and Decode are go-inference's: special tokens added on the way in, left out on
// the way out.
func TestLoRAEncodeDecode(t *testing.T) {
	m := load(t, "llama3")
	ids, err := m.Encode(prompt)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.Tokenize(prompt, true)
	if err != nil || !equalIDs(ids, want) {
		t.Fatalf("Encode %v, Tokenize %v (%v)", ids, want, err)
	}
	if text, err := m.Decode(ids); err != nil || text != prompt {
		t.Fatalf("Decode(Encode(%q)) = %q, %v", prompt, text, err)
	}
}

// onEndingThread runs f on an OS thread that ends with it, so that nothing later can run
// on that thread.
func onEndingThread(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		f()
	}()
	<-done
}

// MLX's streams belong to OS threads, and the library leaves a freshly loaded or applied
// adapter unevaluated: the binding runs a model's MLX work on one thread of its own, so
// an adapter loaded, applied or trained from a thread that has since ended works.
func TestAdapterFromAnEndedThread(t *testing.T) {
	refDir, ref := readLoraRef(t, "completions-masked")
	path := fixture(t, "qwen3")
	var m *mlx.Model
	var err error
	onEndingThread(func() { m, err = mlx.LoadModel(path, mlx.WithAdapterPath(filepath.Join(refDir, "adapter"))) })
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := greedy(t, m, ref.Prompt, len(ref.Greedy)); !equalIDs(got, ref.Greedy) {
		t.Fatalf("greedy %v, mlx-lm %v", got, ref.Greedy)
	}
	onEndingThread(func() {
		if err = m.RemoveAdapter(); err == nil {
			err = m.LoadAdapter(filepath.Join(refDir, "adapter"))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := greedy(t, m, ref.Prompt, len(ref.Greedy)); !equalIDs(got, ref.Greedy) {
		t.Fatalf("after LoadAdapter: greedy %v, mlx-lm %v", got, ref.Greedy)
	}
	onEndingThread(func() {
		if err = m.RemoveAdapter(); err == nil {
			_, err = m.ApplyLoRA(mlx.DefaultLoRAConfig())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	trainAll(m, bg, dataDir("completions"), mlx.WithIters(2), mlx.WithMaskPrompt())
	if err := m.Err(); err != nil {
		t.Fatalf("Train after ApplyLoRA on an ended thread: %v", err)
	}
}
