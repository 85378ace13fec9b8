package mlx

/*
#include "bridge.h"
*/
import "C"

import (
	"context"
	"iter"
	"math"
	"os"
	"path/filepath"
	"runtime/cgo"
	"strconv"
	"strings"
)

// LoRA training, in go-inference's training shape (LoRAConfig, DefaultLoRAConfig,
// ApplyLoRA returning an Adapter with TotalParams and Save, Encode, Decode, NumLayers,
// LoadTrainable) over the C library's training calls: mlx-lm's trainer, datasets and
// adapter folders (docs/training.md).

// LoRAConfig says where LoRA adapters go and their shape. The field names are
// go-inference's (Rank, Alpha, TargetKeys, BFloat16) and go-mlx's (Scale, DType).
type LoRAConfig struct {
	// Rank is the rank r of each adapter's A [in, r] and B [r, out] (at least 1).
	Rank int
	// Alpha sets the adapters' output scale as alpha / Rank (the PEFT convention, as
	// `mlxrun train --alpha` does).
	Alpha float32
	// Scale is mlx-lm's scale itself (the factor on the adapters' output). When it is
	// 0, Alpha / Rank is used; when both are set they must agree. Setting neither is an
	// error: the adapters would have no effect.
	Scale float32
	// Dropout on the adapters' input while training, in [0, 1) (default 0).
	Dropout float32
	// NumLayers adapts the last NumLayers layers; 0 = all of them (the default).
	NumLayers int
	// TargetKeys are the projections to adapt in each layer: any of q_proj, k_proj,
	// v_proj, o_proj (attention) and gate_proj, up_proj, down_proj (MLP), or with their
	// "self_attn." / "mlp." prefix. Empty = q_proj and v_proj. A key that matches no
	// projection of the model is an error naming it.
	TargetKeys []string
	// DType is the compute dtype the caller expects the model to train in. This engine
	// keeps new adapters and their optimizer state in float32 whatever the model
	// computes in, and the model's compute dtype is chosen when it is loaded
	// (WithDType), so DType does not convert anything: DTypeDefault accepts the model as
	// loaded, and any other value must equal Info().DType, else ApplyLoRA fails with
	// ErrInvalidArgument (load the model with WithDType to train in bfloat16).
	DType DType
	// BFloat16 is go-inference's spelling of DType: BFloat16 (mixed precision: the
	// model computes in bfloat16, the adapters stay float32). It is checked as DType is.
	BFloat16 bool
	// Seed seeds the adapters' random initial weights: the same seed gives the same
	// start (default 0, as mlx-lm's --seed). WithTrainSeed seeds the training itself.
	Seed uint64
}

// DefaultLoRAConfig is go-inference's default: rank 8, alpha 16 (scale 2), q_proj and
// v_proj of every layer, no dropout. (The C library's and mlx-lm's own default scale is
// 20; pass Scale: 20 and Alpha: 0 for that.)
func DefaultLoRAConfig() LoRAConfig {
	return LoRAConfig{Rank: 8, Alpha: 16, TargetKeys: []string{"q_proj", "v_proj"}}
}

// resolve checks c against a model computing in dtype and fills Scale and TargetKeys.
// A rank below 1 is left for the library to refuse (its message names it).
func (c LoRAConfig) resolve(dtype DType) (LoRAConfig, error) {
	if c.Rank > math.MaxInt32 || c.Rank < math.MinInt32 {
		return c, invalid("LoRA rank " + strconv.Itoa(c.Rank) + " is out of range")
	}
	if c.NumLayers > math.MaxInt32 || c.NumLayers < math.MinInt32 {
		return c, invalid("LoRA num_layers " + strconv.Itoa(c.NumLayers) + " is out of range (0 = all layers)")
	}
	if c.Rank >= 1 {
		fromAlpha := c.Alpha / float32(c.Rank)
		switch {
		case c.Scale == 0 && c.Alpha == 0:
			return c, invalid("LoRAConfig sets neither Alpha nor Scale: the adapters would have no effect (scale = Alpha / Rank)")
		case c.Scale == 0:
			c.Scale = fromAlpha
		case c.Alpha != 0 && math.Abs(float64(fromAlpha-c.Scale)) > 1e-6*math.Abs(float64(c.Scale)):
			return c, invalid("LoRAConfig's Alpha " + fmtFloat(c.Alpha) + " / Rank " + strconv.Itoa(c.Rank) + " = " +
				fmtFloat(fromAlpha) + " disagrees with its Scale " + fmtFloat(c.Scale) + ": set one of them")
		}
	}
	want := c.DType
	if c.BFloat16 {
		if want != DTypeDefault && want != BFloat16 {
			return c, invalid("LoRAConfig sets BFloat16 and DType " + want.String() + ": set one of them")
		}
		want = BFloat16
	}
	if want != DTypeDefault && want != dtype {
		return c, invalid("LoRAConfig asks to train in " + want.String() + " but the model computes in " + dtype.String() +
			": load it with WithDType(" + want.String() + ") (adapters themselves are always float32)")
	}
	c.TargetKeys = append([]string(nil), c.TargetKeys...)
	if len(c.TargetKeys) == 0 {
		c.TargetKeys = []string{"q_proj", "v_proj"}
	}
	return c, nil
}

func fmtFloat(f float32) string { return strconv.FormatFloat(float64(f), 'g', -1, 32) }

// Adapter is the LoRA adapter ApplyLoRA put on a model (go-inference's Adapter:
// TotalParams and Save). It stays valid until RemoveAdapter or LoadAdapter takes it off
// the model; training changes its weights in place.
type Adapter struct {
	model       *Model
	totalParams int
	config      LoRAConfig
}

// TotalParams is the number of trainable values: every element of every adapter's A and
// B.
func (a *Adapter) TotalParams() int { return a.totalParams }

// Config is the configuration the adapter was made with, Scale and TargetKeys filled in.
func (a *Adapter) Config() LoRAConfig {
	c := a.config
	c.TargetKeys = append([]string(nil), c.TargetKeys...)
	return c
}

// Save writes the adapter's current weights in mlx-lm's layout: path is a folder
// (created if needed) that receives adapters.safetensors and adapter_config.json, which
// WithAdapterPath, LoadAdapter, Fuse, mlx_lm.generate --adapter-path and mlx_lm.fuse
// read. A path ending in ".safetensors" (go-inference's form) names the weights file
// itself; adapter_config.json goes beside it, and only a file named
// adapters.safetensors makes the folder loadable as it is. Save fails with
// ErrInvalidArgument once the adapter is no longer on the model. It waits while a
// generation or training runs on the model.
func (a *Adapter) Save(path string) error {
	if a == nil || a.model == nil {
		return invalid("Save on a nil Adapter")
	}
	m := a.model
	if err := m.enter(); err != nil {
		return err
	}
	defer m.exit()
	m.adapterMu.Lock()
	defer m.adapterMu.Unlock()
	if m.adapter != a {
		return invalid("this adapter is no longer on the model (RemoveAdapter or LoadAdapter took it off)")
	}
	return m.saveAdapter(path)
}

// LoadTrainable loads a model to train, as go-inference's LoadTrainable does; every model
// this package loads can be trained, so it is LoadModel. Options are LoadModel's (e.g.
// WithDType(BFloat16) to train a bfloat16 model, WithAdapterPath to go on training an
// adapter).
func LoadTrainable(path string, opts ...LoadOption) (*Model, error) { return LoadModel(path, opts...) }

// NumLayers is the number of decoder layers (what LoRAConfig.NumLayers counts).
func (m *Model) NumLayers() int { return m.info.NumLayers }

// Encode tokenizes text as training does: with the tokens the tokenizer adds (such as
// BOS). It never waits for a generation or training.
func (m *Model) Encode(text string) ([]int32, error) { return m.Tokenize(text, true) }

// Decode turns token ids back into text, special tokens left out. It never waits for a
// generation or training.
func (m *Model) Decode(ids []int32) (string, error) { return m.Detokenize(ids, true) }

// ApplyLoRA puts fresh LoRA adapters on the model (A random, B zero: the model's output
// is unchanged until they are trained) and returns the Adapter. It fails, leaving the
// model as it was, when the model already has an adapter (one loaded with
// WithAdapterPath or LoadAdapter too: RemoveAdapter first), for a rank below 1, a key
// that matches no projection, or a DType the model does not compute in; the error is an
// *Error naming the setting. It waits while a generation or training runs on the model.
func (m *Model) ApplyLoRA(cfg LoRAConfig) (*Adapter, error) {
	r, err := cfg.resolve(m.info.DType)
	if err != nil {
		return nil, err
	}
	var a cArena
	defer a.free()
	p := (*C.mlxrun_lora_params)(a.alloc(C.sizeof_mlxrun_lora_params))
	*p = C.mlxrun_lora_default_params()
	p.rank = C.int32_t(r.Rank)
	p.scale = C.float(r.Scale)
	p.dropout = C.float(r.Dropout)
	p.num_layers = C.int32_t(r.NumLayers)
	p.seed = C.uint64_t(r.Seed)
	if p.keys, err = a.cString(strings.Join(r.TargetKeys, ","), "LoRA target keys"); err != nil {
		return nil, err
	}
	if err := m.enter(); err != nil {
		return nil, err
	}
	defer m.exit()
	m.adapterMu.Lock()
	defer m.adapterMu.Unlock()
	var n C.uint64_t
	if err := m.callOn(func() C.enum_mlxrun_status { return C.mlxrun_model_apply_lora(m.ptr, p, &n) }); err != nil {
		return nil, err
	}
	ad := &Adapter{model: m, totalParams: int(n), config: r}
	m.adapter = ad
	return ad, nil
}

// SaveAdapter writes the adapter on the model, however it got there (ApplyLoRA,
// LoadAdapter, WithAdapterPath), as Adapter.Save does. A model without an adapter gives
// ErrInvalidArgument.
func (m *Model) SaveAdapter(path string) error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.exit()
	m.adapterMu.Lock()
	defer m.adapterMu.Unlock()
	return m.saveAdapter(path)
}

// LoadAdapter puts the adapter folder dir (mlx-lm's layout, from mlx_lm.lora, Train or
// Save) on the model, to generate with or to train further. It fails, leaving the model
// as it was, when the model already has an adapter (RemoveAdapter first) or the adapter
// does not fit the model (the error names the tensor or field). It waits while a
// generation or training runs on the model.
func (m *Model) LoadAdapter(dir string) error {
	var a cArena
	defer a.free()
	cdir, err := a.cString(dir, "adapter folder")
	if err != nil {
		return err
	}
	if err := m.enter(); err != nil {
		return err
	}
	defer m.exit()
	m.adapterMu.Lock()
	defer m.adapterMu.Unlock()
	if err := m.callOn(func() C.enum_mlxrun_status { return C.mlxrun_model_load_adapter(m.ptr, cdir) }); err != nil {
		return err
	}
	m.adapter = nil
	return nil
}

// RemoveAdapter takes the adapter off the model, leaving the base model (a no-op
// without one). The Adapter that ApplyLoRA returned can no longer be saved. It waits
// while a generation or training runs on the model.
func (m *Model) RemoveAdapter() error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.exit()
	m.adapterMu.Lock()
	defer m.adapterMu.Unlock()
	if err := m.callOn(func() C.enum_mlxrun_status { return C.mlxrun_model_remove_adapter(m.ptr) }); err != nil {
		return err
	}
	m.adapter = nil
	return nil
}

// saveAdapter writes the model's adapter to path (a folder, or a .safetensors file). The
// caller is registered with enter and holds adapterMu.
func (m *Model) saveAdapter(path string) error {
	if path == "" {
		return invalid("no adapter folder given")
	}
	if !strings.HasSuffix(path, ".safetensors") {
		return m.saveAdapterDir(path)
	}
	// The library writes folders; a file is written as a folder beside it, then moved.
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return &Error{Status: StatusIO, Message: err.Error()}
	}
	tmp, err := os.MkdirTemp(dir, ".adapter-save-")
	if err != nil {
		return &Error{Status: StatusIO, Message: err.Error()}
	}
	defer os.RemoveAll(tmp)
	if err := m.saveAdapterDir(tmp); err != nil {
		return err
	}
	for _, mv := range [][2]string{
		{filepath.Join(tmp, "adapters.safetensors"), path},
		{filepath.Join(tmp, "adapter_config.json"), filepath.Join(dir, "adapter_config.json")},
	} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			return &Error{Status: StatusIO, Message: err.Error()}
		}
	}
	return nil
}

func (m *Model) saveAdapterDir(dir string) error {
	var a cArena
	defer a.free()
	cdir, err := a.cString(dir, "adapter folder")
	if err != nil {
		return err
	}
	return m.callOn(func() C.enum_mlxrun_status { return C.mlxrun_model_save_adapter(m.ptr, cdir) })
}

// Optimizer is a training optimizer (WithOptimizer).
type Optimizer int32

// Optimizers.
const (
	// OptimizerAdam is MLX's Adam (betas 0.9, 0.999, eps 1e-8, no bias correction):
	// mlx-lm's default.
	OptimizerAdam Optimizer = 0
	// OptimizerAdamW is AdamW with weight decay 0.01.
	OptimizerAdamW Optimizer = 1
	// OptimizerSGD is plain SGD.
	OptimizerSGD Optimizer = 2
)

// The values are the header's (mlxrun_optimizer, mlxrun_progress_kind); this does not
// compile if they drift.
func _() {
	var x [1]struct{}
	_ = x[OptimizerAdam-C.MLXRUN_OPTIMIZER_ADAM]
	_ = x[OptimizerAdamW-C.MLXRUN_OPTIMIZER_ADAMW]
	_ = x[OptimizerSGD-C.MLXRUN_OPTIMIZER_SGD]
	_ = x[ProgressTrain-C.MLXRUN_PROGRESS_TRAIN]
	_ = x[ProgressVal-C.MLXRUN_PROGRESS_VAL]
	_ = x[ProgressSaved-C.MLXRUN_PROGRESS_SAVED]
	_ = x[ProgressWarning-C.MLXRUN_PROGRESS_WARNING]
}

func (o Optimizer) String() string {
	switch o {
	case OptimizerAdam:
		return "adam"
	case OptimizerAdamW:
		return "adamw"
	case OptimizerSGD:
		return "sgd"
	}
	return "Optimizer(" + strconv.Itoa(int(o)) + ")"
}

// TrainConfig is what the TrainOptions set, for Train and Evaluate.
type TrainConfig struct {
	Iters        int       // training steps (batches), default 1000
	BatchSize    int       // examples per batch, default 4
	Optimizer    Optimizer // default OptimizerAdam
	LearningRate float32   // the peak learning rate, default 1e-5
	// Warmup steps go linearly from 0 to LearningRate (0 = none).
	Warmup int
	// CosineDecaySteps after the warmup decay the rate to LREnd along a cosine
	// (0 = a constant rate).
	CosineDecaySteps int
	LREnd            float32
	// GradAccumulation averages the gradients of this many batches per update
	// (default 1).
	GradAccumulation int
	StepsPerReport   int // a ProgressTrain report every this many steps (default 10)
	StepsPerEval     int // a validation every this many steps (default 200)
	ValBatches       int // validation batches per validation; -1 = all (default 25)
	// TestBatches is the number of batches Evaluate averages over; -1 = all (the
	// default).
	TestBatches int
	// SaveEvery writes the adapter every this many steps (with AdapterDir; default 100);
	// 0 = only at the end.
	SaveEvery    int
	MaxSeqLength int    // longer examples are truncated, with a warning (default 2048)
	Seed         uint64 // seeds the batch order and dropout (default 0)
	// MaskPrompt leaves the prompt out of the loss (prompt/completion and chat data).
	MaskPrompt bool
	// AdapterDir is the folder the adapter is written to: adapter_config.json at the
	// start, adapters.safetensors every SaveEvery steps (with a numbered copy) and at the
	// end. "" = not written.
	AdapterDir string
	// GradCheckpoint recomputes each layer in the backward pass: less memory, about a
	// third more compute.
	GradCheckpoint bool
}

// DefaultTrainConfig is the configuration before options: the C library's defaults,
// which are mlx-lm's lora defaults (1000 steps of batch 4, Adam at 1e-5, a report every
// 10 steps, validation every 200 on 25 batches, a checkpoint every 100 steps, sequences
// of up to 2048 tokens, seed 0), and Evaluate over every batch.
func DefaultTrainConfig() TrainConfig {
	p := C.mlxrun_train_default_params()
	return TrainConfig{
		Iters:            int(p.iters),
		BatchSize:        int(p.batch_size),
		Optimizer:        Optimizer(p.optimizer),
		LearningRate:     float32(p.learning_rate),
		Warmup:           int(p.warmup),
		CosineDecaySteps: int(p.cosine_decay_steps),
		LREnd:            float32(p.lr_end),
		GradAccumulation: int(p.grad_accumulation_steps),
		StepsPerReport:   int(p.steps_per_report),
		StepsPerEval:     int(p.steps_per_eval),
		ValBatches:       int(p.val_batches),
		TestBatches:      -1,
		SaveEvery:        int(p.save_every),
		MaxSeqLength:     int(p.max_seq_length),
		Seed:             uint64(p.seed),
		MaskPrompt:       bool(p.mask_prompt),
		GradCheckpoint:   bool(p.grad_checkpoint),
	}
}

// TrainOption configures Train and Evaluate.
type TrainOption func(*TrainConfig)

// WithIters sets the number of training steps (default 1000).
func WithIters(n int) TrainOption { return func(c *TrainConfig) { c.Iters = n } }

// WithTrainBatchSize sets the examples per batch (default 4); a dataset needs at least
// that many examples. (WithBatchSize is Classify's and BatchGenerate's option.)
func WithTrainBatchSize(n int) TrainOption { return func(c *TrainConfig) { c.BatchSize = n } }

// WithLearningRate sets the (peak) learning rate (default 1e-5).
func WithLearningRate(lr float32) TrainOption { return func(c *TrainConfig) { c.LearningRate = lr } }

// WithOptimizer picks the optimizer (default OptimizerAdam).
func WithOptimizer(o Optimizer) TrainOption { return func(c *TrainConfig) { c.Optimizer = o } }

// WithWarmup raises the learning rate linearly from 0 over the first steps.
func WithWarmup(steps int) TrainOption { return func(c *TrainConfig) { c.Warmup = steps } }

// WithCosineDecay decays the learning rate to lrEnd along a cosine over steps steps
// after the warmup.
func WithCosineDecay(steps int, lrEnd float32) TrainOption {
	return func(c *TrainConfig) { c.CosineDecaySteps, c.LREnd = steps, lrEnd }
}

// WithGradAccumulation averages the gradients of steps batches per optimizer update.
func WithGradAccumulation(steps int) TrainOption {
	return func(c *TrainConfig) { c.GradAccumulation = steps }
}

// WithMaskPrompt leaves the prompt out of the loss: the completion of prompt/completion
// data, the last message of chat data (text data is refused with it).
func WithMaskPrompt() TrainOption { return func(c *TrainConfig) { c.MaskPrompt = true } }

// WithAdapterDir has training write the adapter to the folder dir (mlx-lm's layout;
// load it with WithAdapterPath or LoadAdapter). Each file is written through a
// temporary file and a rename, so a cancelled run leaves the last checkpoint whole.
func WithAdapterDir(dir string) TrainOption { return func(c *TrainConfig) { c.AdapterDir = dir } }

// WithSaveEvery writes the adapter every n steps (default 100; 0 = only at the end).
func WithSaveEvery(n int) TrainOption { return func(c *TrainConfig) { c.SaveEvery = n } }

// WithStepsPerReport yields a ProgressTrain report every n steps (default 10), with the
// mean loss of those steps.
func WithStepsPerReport(n int) TrainOption { return func(c *TrainConfig) { c.StepsPerReport = n } }

// WithStepsPerEval validates every n steps (default 200), and before the first and
// after the last step, when the data folder has valid.jsonl.
func WithStepsPerEval(n int) TrainOption { return func(c *TrainConfig) { c.StepsPerEval = n } }

// WithValBatches sets the batches per validation (default 25; -1 = all).
func WithValBatches(n int) TrainOption { return func(c *TrainConfig) { c.ValBatches = n } }

// WithTestBatches sets the batches Evaluate averages over (default -1 = all).
func WithTestBatches(n int) TrainOption { return func(c *TrainConfig) { c.TestBatches = n } }

// WithMaxSeqLength truncates longer examples to n tokens, with a ProgressWarning
// (default 2048).
func WithMaxSeqLength(n int) TrainOption { return func(c *TrainConfig) { c.MaxSeqLength = n } }

// WithTrainSeed seeds the batch order and dropout (default 0). (WithSeed is sampling's
// option.)
func WithTrainSeed(seed uint64) TrainOption { return func(c *TrainConfig) { c.Seed = seed } }

// WithGradCheckpoint turns on gradient checkpointing: less memory for about a third
// more compute, with the same losses.
func WithGradCheckpoint() TrainOption { return func(c *TrainConfig) { c.GradCheckpoint = true } }

func applyTrain(base TrainConfig, opts []TrainOption) TrainConfig {
	cfg := base
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	return cfg
}

// trainParams builds the C training parameters in a's memory. Values in range go to the
// library, which names a bad one (a zero batch size, an unknown optimizer) in its error.
func (c *TrainConfig) trainParams(a *cArena) (*C.mlxrun_train_params, error) {
	p := (*C.mlxrun_train_params)(a.alloc(C.sizeof_mlxrun_train_params))
	*p = C.mlxrun_train_default_params()
	for _, f := range []struct {
		dst  *C.uint32_t
		v    int
		what string
	}{
		{&p.iters, c.Iters, "iters"},
		{&p.batch_size, c.BatchSize, "batch size"},
		{&p.warmup, c.Warmup, "warmup steps"},
		{&p.cosine_decay_steps, c.CosineDecaySteps, "cosine decay steps"},
		{&p.grad_accumulation_steps, c.GradAccumulation, "gradient accumulation steps"},
		{&p.steps_per_report, c.StepsPerReport, "steps per report"},
		{&p.steps_per_eval, c.StepsPerEval, "steps per eval"},
		{&p.save_every, c.SaveEvery, "save every"},
		{&p.max_seq_length, c.MaxSeqLength, "max sequence length"},
	} {
		if f.v < 0 || f.v > math.MaxUint32 {
			return nil, invalid(f.what + " " + strconv.Itoa(f.v) + " is out of range")
		}
		*f.dst = C.uint32_t(f.v)
	}
	if c.ValBatches < math.MinInt32 || c.ValBatches > math.MaxInt32 {
		return nil, invalid("validation batches " + strconv.Itoa(c.ValBatches) + " is out of range (-1 = all)")
	}
	p.val_batches = C.int32_t(c.ValBatches)
	p.optimizer = C.int32_t(c.Optimizer)
	p.learning_rate = C.float(c.LearningRate)
	p.lr_end = C.float(c.LREnd)
	p.seed = C.uint64_t(c.Seed)
	p.mask_prompt = C.bool(c.MaskPrompt)
	p.grad_checkpoint = C.bool(c.GradCheckpoint)
	if c.AdapterDir != "" {
		s, err := a.cString(c.AdapterDir, "adapter folder")
		if err != nil {
			return nil, err
		}
		p.adapter_path = s
	}
	return p, nil
}

// ProgressKind says what a TrainProgress reports.
type ProgressKind int

const (
	// ProgressTrain: the mean training loss of the steps since the last report, with the
	// learning rate, speeds, tokens and memory.
	ProgressTrain ProgressKind = 0
	// ProgressVal: the validation loss after Step steps.
	ProgressVal ProgressKind = 1
	// ProgressSaved: the adapter was written to Path (a checkpoint or the final one).
	ProgressSaved ProgressKind = 2
	// ProgressWarning: a warning in Warning (examples truncated to MaxSeqLength).
	ProgressWarning ProgressKind = 3
)

func (k ProgressKind) String() string {
	switch k {
	case ProgressTrain:
		return "train"
	case ProgressVal:
		return "val"
	case ProgressSaved:
		return "saved"
	case ProgressWarning:
		return "warning"
	}
	return "ProgressKind(" + strconv.Itoa(int(k)) + ")"
}

// TrainProgress is one training report. Fields that do not belong to its Kind are zero.
type TrainProgress struct {
	Kind ProgressKind
	// Step is the number of steps done: the report's last step (ProgressTrain), the
	// steps before the validation (ProgressVal: 0 for the one before training), the
	// step of the checkpoint (ProgressSaved).
	Step int

	TrainLoss    float64 // ProgressTrain: mean loss of the steps since the last report
	LearningRate float64 // ProgressTrain: the rate of the next update
	ItersPerSec  float64 // ProgressTrain: steps per second since the last report
	TokensPerSec float64 // ProgressTrain: loss tokens per second since the last report
	// TrainedTokens is the number of loss tokens trained on so far (ProgressTrain).
	TrainedTokens int
	// PeakMemoryBytes is MLX's peak memory so far (ProgressTrain).
	PeakMemoryBytes uint64

	ValLoss float64 // ProgressVal: the validation loss

	Path    string // ProgressSaved: the adapters.safetensors written
	Warning string // ProgressWarning: the warning's text
}

func progressFromC(p *C.mlxrun_train_progress) TrainProgress {
	r := TrainProgress{Kind: ProgressKind(p.kind), Step: int(p.iteration)}
	switch r.Kind {
	case ProgressTrain:
		r.TrainLoss = float64(p.train_loss)
		r.LearningRate = float64(p.learning_rate)
		r.ItersPerSec = float64(p.iterations_per_second)
		r.TokensPerSec = float64(p.tokens_per_second)
		r.TrainedTokens = int(p.trained_tokens)
		r.PeakMemoryBytes = uint64(p.peak_memory)
	case ProgressVal:
		r.ValLoss = float64(p.val_loss)
	case ProgressSaved:
		if p.message != nil {
			r.Path = C.GoString(p.message)
		}
	case ProgressWarning:
		if p.message != nil {
			r.Warning = C.GoString(p.message)
		}
	}
	return r
}

// trainStream is what the progress callback reaches through its cgo.Handle (the
// training counterpart of stream, see stream.go).
type trainStream struct {
	handoff[TrainProgress]
}

//export mlxrunGoTrainProgress
func mlxrunGoTrainProgress(p *C.mlxrun_train_progress, handle C.uintptr_t) C.bool {
	s, ok := cgo.Handle(handle).Value().(*trainStream)
	if !ok {
		return false
	}
	return C.bool(s.deliver(progressFromC(p)))
}

// Train trains the adapter on the model (put there by ApplyLoRA, LoadAdapter or
// WithAdapterPath) on the data folder dataDir: train.jsonl, and valid.jsonl for
// validation, in mlx-lm's formats (docs/training.md). It streams the reports; nothing
// runs until the sequence is ranged over, and each range runs one training.
//
// Breaking out of the loop stops training within a step, and Err stays nil; cancelling
// ctx does too, after which Err returns ctx.Err(); Close stops it with ErrClosed. The
// adapter files written before stay whole. A failure (no adapter on the model, a missing
// data folder, a malformed line: the message names the file and line) is an *Error from
// Err. Training runs one at a time with the model's generations: it waits for its turn
// (honouring ctx), and generations wait for it.
//
//	for p := range model.Train(ctx, "data/", mlx.WithIters(600), mlx.WithAdapterDir("adapters")) {
//		if p.Kind == mlx.ProgressTrain {
//			fmt.Printf("step %d: loss %.3f\n", p.Step, p.TrainLoss)
//		}
//	}
//	if err := model.Err(); err != nil { ... }
func (m *Model) Train(ctx context.Context, dataDir string, opts ...TrainOption) iter.Seq[TrainProgress] {
	cfg := applyTrain(DefaultTrainConfig(), opts)
	return func(yield func(TrainProgress) bool) {
		err := m.train(ctx, dataDir, cfg, yield)
		m.mu.Lock()
		m.err = err
		m.mu.Unlock()
	}
}

// train runs one training on m, yielding its reports (the way run in stream.go runs a
// generation: the C call on a producer goroutine, the loop body on the caller's).
func (m *Model) train(ctx context.Context, dataDir string, cfg TrainConfig, yield func(TrainProgress) bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	a := &cArena{}
	params, err := cfg.trainParams(a)
	if err != nil {
		a.free()
		return err
	}
	cdir, err := a.cString(dataDir, "data folder")
	if err != nil {
		a.free()
		return err
	}
	if err := m.enter(); err != nil {
		a.free()
		return err
	}
	select {
	case m.gen <- struct{}{}:
	case <-ctx.Done():
		err = ctx.Err()
	case <-m.closing:
		err = ErrClosed
	}
	if err == nil && m.isClosing.Load() {
		<-m.gen
		err = ErrClosed
	}
	if err != nil {
		m.exit()
		a.free()
		return err
	}

	s := &trainStream{newHandoff[TrainProgress](ctx, m.closing, nil)}
	h := cgo.NewHandle(s)
	defer h.Delete()

	// A cancelled context, or the consumer leaving the loop, also stops training while
	// the library computes (between reports). The library forgets a cancel that comes
	// before its training starts (while it reads the data), so the watcher repeats it
	// until the C call returns; the slot is released only after the watcher is done,
	// so a late cancel never reaches the next call.
	callDone := make(chan struct{})
	stop := make(chan struct{})
	watcherDone := make(chan struct{})
	go func() {
		defer close(watcherDone)
		select {
		case <-ctx.Done():
		case <-stop:
		case <-callDone:
			return
		}
		cancelUntil(m.ptr, callDone)
	}()

	var (
		status  C.enum_mlxrun_status
		callErr error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.w.do(func() {
			status = C.mlxrun_go_train(m.ptr, cdir, params, C.uintptr_t(h))
			if status != C.MLXRUN_OK {
				callErr = lastError(status)
			}
		})
		close(callDone)
		<-watcherDone
		<-m.gen
		m.exit()
		a.free()
	}()

	broke := s.consume(yield, done, func() { close(stop) })

	switch {
	case status == C.MLXRUN_OK:
		return nil
	case status == C.MLXRUN_ERR_CANCELLED && broke:
		return nil
	case status == C.MLXRUN_ERR_CANCELLED && m.isClosing.Load():
		return ErrClosed
	case status == C.MLXRUN_ERR_CANCELLED && ctx.Err() != nil:
		return ctx.Err()
	}
	return callErr
}

// Evaluate is the mean loss of the model (with its adapter, if any) on the JSONL file
// file (any training format), mlx_lm.lora's --test: batches of WithTrainBatchSize
// examples (default 4) of at most WithMaxSeqLength tokens, the prompt left out with
// WithMaskPrompt, over the first WithTestBatches batches in length order (default all).
// The perplexity is math.Exp(loss). Malformed data fails naming the file and line, as
// does a file with fewer examples than a batch. ctx is honoured while the call waits for
// its turn (it runs one at a time with generations and training); the library cannot
// stop an evaluation once it has started.
func (m *Model) Evaluate(ctx context.Context, file string, opts ...TrainOption) (float64, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	cfg := applyTrain(DefaultTrainConfig(), opts)
	if cfg.TestBatches < math.MinInt32 || cfg.TestBatches > math.MaxInt32 {
		return 0, invalid("test batches " + strconv.Itoa(cfg.TestBatches) + " is out of range (-1 = all)")
	}
	a := &cArena{}
	defer a.free()
	params, err := cfg.trainParams(a)
	if err != nil {
		return 0, err
	}
	cfile, err := a.cString(file, "data file")
	if err != nil {
		return 0, err
	}
	if err := m.enter(); err != nil {
		return 0, err
	}
	defer m.exit()
	select {
	case m.gen <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-m.closing:
		return 0, ErrClosed
	}
	defer func() { <-m.gen }()
	if m.isClosing.Load() {
		return 0, ErrClosed
	}
	var loss C.float
	if err := m.callOn(func() C.enum_mlxrun_status {
		return C.mlxrun_model_evaluate(m.ptr, cfile, params, C.int32_t(cfg.TestBatches), &loss)
	}); err != nil {
		return 0, err
	}
	return float64(loss), nil
}

// FuseConfig is what the FuseOptions set.
type FuseConfig struct {
	// Dequantize writes a quantized base's fused projections as float weights instead of
	// quantizing them again.
	Dequantize bool
}

// FuseOption configures Fuse.
type FuseOption func(*FuseConfig)

// WithDequantize has Fuse write float weights for a quantized base (mlx_lm.fuse's
// --dequantize).
func WithDequantize() FuseOption { return func(c *FuseConfig) { c.Dequantize = true } }

// Fuse writes the base model at modelPath (an HF-layout folder, or a GGUF file) with the
// adapter folder adapterDir fused into its weights to the folder saveDir (created if
// needed), as mlx_lm.fuse does: a quantized base stays quantized unless WithDequantize.
// The result loads with LoadModel (and in mlx-lm) without the adapter. It works on files
// alone, touching no loaded model, and returns the number of projections fused.
func Fuse(modelPath, adapterDir, saveDir string, opts ...FuseOption) (int, error) {
	var cfg FuseConfig
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	var a cArena
	defer a.free()
	cm, err := a.cString(modelPath, "model path")
	if err != nil {
		return 0, err
	}
	ca, err := a.cString(adapterDir, "adapter folder")
	if err != nil {
		return 0, err
	}
	cs, err := a.cString(saveDir, "save folder")
	if err != nil {
		return 0, err
	}
	var n C.uint64_t
	if err := call(func() C.enum_mlxrun_status {
		return C.mlxrun_fuse_adapter(cm, ca, cs, C.bool(cfg.Dequantize), &n)
	}); err != nil {
		return 0, err
	}
	return int(n), nil
}
