package mlx

/*
#include "bridge.h"
*/
import "C"

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// DType is a compute dtype for WithDType.
type DType int32

// Compute dtypes. DTypeDefault lets the library choose: float32 on the CPU (MLX's CPU
// kernels are fastest in f32), the checkpoint's own dtype on a GPU.
const (
	DTypeDefault DType = 0
	Float32      DType = 1
	Float16      DType = 2
	BFloat16     DType = 3
)

// The values are the header's (mlxrun_dtype); this does not compile if they drift.
func _() {
	var x [1]struct{}
	_ = x[DTypeDefault-C.MLXRUN_DTYPE_DEFAULT]
	_ = x[Float32-C.MLXRUN_DTYPE_FLOAT32]
	_ = x[Float16-C.MLXRUN_DTYPE_FLOAT16]
	_ = x[BFloat16-C.MLXRUN_DTYPE_BFLOAT16]
}

func (d DType) String() string {
	switch d {
	case DTypeDefault:
		return "default"
	case Float32:
		return "float32"
	case Float16:
		return "float16"
	case BFloat16:
		return "bfloat16"
	}
	return "DType(" + strconv.Itoa(int(d)) + ")"
}

// LoadConfig is what the LoadOptions set.
type LoadConfig struct {
	// ContextLength is the longest prompt + generation accepted, in tokens; 0 means the
	// model's own maximum (max_position_embeddings).
	ContextLength int
	// DType is the compute dtype (DTypeDefault: chosen by the library).
	DType DType
	// Device is "cpu", "gpu", or "" for the GPU when MLX has one, else the CPU. The
	// device becomes MLX's default device for the process.
	Device string
	// AdapterPath is a LoRA adapter folder (adapters.safetensors + adapter_config.json, as
	// mlx_lm.lora and mlxrun train write them) to put on the model; "" for none.
	AdapterPath string
	// Backend names what runs the model: "native" (or "": this library, in process) or
	// "mlx_lm" (mlx-lm in a Python worker process; see Backends).
	Backend string
	// Python is the mlx_lm backend's Python executable ("": Venv's, else $MLXRUN_PYTHON,
	// else $VIRTUAL_ENV's, else python3 on the PATH).
	Python string
	// Venv is a virtualenv whose bin/python the mlx_lm backend runs ("": none).
	Venv string
	// BackendTimeout is how long the mlx_lm worker may stay silent during a call before
	// it is declared hung and killed (0: two minutes).
	BackendTimeout time.Duration
	// Distributed names MLX's distributed backend ("ring", "jaccl", "mpi", "nccl" or
	// "any") to run this process as one rank of a group and shard the model over its
	// ranks; "" loads it whole. See WithDistributed.
	Distributed string
	// DistributedTimeout is how long the load waits for every rank to join (0: 10 s), and
	// then the longest a call may wait on the other ranks without computing before it
	// fails with ErrMLX (a peer gone or stuck).
	DistributedTimeout time.Duration
}

// LoadOption configures LoadModel.
type LoadOption func(*LoadConfig)

// WithContextLength caps prompt + generation at n tokens (0: the model's maximum).
// Longer prompts are refused with ErrInvalidArgument; generation stops at the cap.
func WithContextLength(n int) LoadOption { return func(c *LoadConfig) { c.ContextLength = n } }

// WithContextLen is go-inference's spelling of WithContextLength.
func WithContextLen(n int) LoadOption { return WithContextLength(n) }

// WithDType sets the compute dtype; weights are converted at load.
func WithDType(d DType) LoadOption { return func(c *LoadConfig) { c.DType = d } }

// WithAdapterPath loads the LoRA adapter in folder dir (mlx-lm's layout) with the model.
// An adapter that does not fit the model fails the load with ErrWeights or ErrConfig,
// naming the tensor or field.
func WithAdapterPath(dir string) LoadOption { return func(c *LoadConfig) { c.AdapterPath = dir } }

// WithBackend chooses the backend that runs the model: "native" (the default) or
// "mlx_lm", which runs mlx-lm in a Python worker process and gives every architecture
// mlx-lm has. An unavailable backend fails the load with ErrBackend and the reason.
func WithBackend(name string) LoadOption { return func(c *LoadConfig) { c.Backend = name } }

// WithPython sets the Python executable of the mlx_lm backend.
func WithPython(path string) LoadOption { return func(c *LoadConfig) { c.Python = path } }

// WithVenv runs the mlx_lm backend with the Python of the virtualenv at dir.
func WithVenv(dir string) LoadOption { return func(c *LoadConfig) { c.Venv = dir } }

// WithBackendTimeout bounds how long the mlx_lm worker may stay silent during a call.
func WithBackendTimeout(d time.Duration) LoadOption {
	return func(c *LoadConfig) { c.BackendTimeout = d }
}

// WithDistributed runs this process as one rank of a group over MLX's distributed
// backend (e.g. "ring": TCP, reading MLX_RANK and MLX_HOSTFILE from the environment, the
// hostfile a JSON list of one ["ip:port", ...] list per rank) and shards the model over the
// ranks (tensor parallelism). Every rank loads the same model with the same options and
// makes the same calls in the same order; each gets the same tokens. A rank that dies
// makes the others' calls fail with ErrMLX. A rank that is missing fails the load after
// timeout (0: 10 s); a call that waits on the others that long without computing fails.
func WithDistributed(backend string, timeout time.Duration) LoadOption {
	return func(c *LoadConfig) { c.Distributed, c.DistributedTimeout = backend, timeout }
}

// WithDevice selects "cpu" or "gpu" ("" = the GPU when available, else the CPU).
func WithDevice(device string) LoadOption { return func(c *LoadConfig) { c.Device = device } }

func (c *LoadConfig) toC() (C.mlxrun_load_params, error) {
	p := C.mlxrun_load_default_params()
	switch strings.ToLower(strings.TrimSpace(c.Device)) {
	case "", "default":
		p.device = C.MLXRUN_DEVICE_DEFAULT
	case "cpu":
		p.device = C.MLXRUN_DEVICE_CPU
	case "gpu":
		p.device = C.MLXRUN_DEVICE_GPU
	default:
		return p, invalid(`unknown device "` + c.Device + `" (want "cpu", "gpu" or "")`)
	}
	if c.ContextLength < 0 || c.ContextLength > math.MaxUint32 {
		return p, invalid("context length " + strconv.Itoa(c.ContextLength) + " is out of range (0 = the model's maximum)")
	}
	p.context_length = C.uint32_t(c.ContextLength)
	// Any value goes to the library, which names a bad one in its error.
	p.dtype = C.int32_t(c.DType)
	if c.BackendTimeout < 0 || c.BackendTimeout.Milliseconds() > math.MaxUint32 {
		return p, invalid("backend timeout " + c.BackendTimeout.String() + " is out of range")
	}
	p.backend_timeout_ms = C.uint32_t(c.BackendTimeout.Milliseconds())
	if c.DistributedTimeout < 0 || c.DistributedTimeout.Milliseconds() > math.MaxUint32 {
		return p, invalid("distributed timeout " + c.DistributedTimeout.String() + " is out of range")
	}
	p.distributed_timeout_ms = C.uint32_t(c.DistributedTimeout.Milliseconds())
	return p, nil
}

// GenerateConfig is what the GenerateOptions set. The zero values of TopP and
// RepeatPenalty mean "off", as in go-inference.
type GenerateConfig struct {
	MaxTokens     int      // most tokens to generate (default 256)
	Temperature   float32  // 0 = greedy (default)
	TopK          int      // keep the k most likely tokens; 0 = off
	TopP          float32  // nucleus sampling mass in (0, 1]; 0 or 1 = off
	MinP          float32  // keep tokens with p >= MinP * p(top); 0 = off
	StopTokens    []int32  // extra token ids that end generation
	StopStrings   []string // strings that end generation (the text ends before them)
	RepeatPenalty float32  // > 1 penalises repeats; 0 or 1 = off
	Seed          uint64   // with HasSeed, sampling repeats run to run
	HasSeed       bool
	ReturnLogits  bool // fill Token.Logprob with each token's log-probability
	BatchSize     int  // Classify / BatchGenerate: most prompts computed together (0 = automatic)

	// Chat template options (Chat, ApplyChatTemplate, NewSession).
	TemplateName string         // a named template of tokenizer_config.json ("" = default)
	TemplateVars map[string]any // extra template variables, e.g. {"enable_thinking": false}

	// Result, when set, receives the call's outcome when it ends.
	Result *Result
}

// DefaultGenerateConfig is the configuration before options: 256 tokens, greedy.
func DefaultGenerateConfig() GenerateConfig {
	return GenerateConfig{MaxTokens: 256}
}

// GenerateOption configures Generate, Chat, Session.Send and NewSession.
type GenerateOption func(*GenerateConfig)

// WithMaxTokens caps the number of generated tokens (default 256).
func WithMaxTokens(n int) GenerateOption { return func(c *GenerateConfig) { c.MaxTokens = n } }

// WithTemperature sets the sampling temperature; 0 (the default) is greedy.
func WithTemperature(t float32) GenerateOption { return func(c *GenerateConfig) { c.Temperature = t } }

// WithTopK keeps the k most likely tokens (0 = off).
func WithTopK(k int) GenerateOption { return func(c *GenerateConfig) { c.TopK = k } }

// WithTopP sets nucleus sampling's probability mass (0 or 1 = off).
func WithTopP(p float32) GenerateOption { return func(c *GenerateConfig) { c.TopP = p } }

// WithMinP keeps tokens at least p times as likely as the top one (0 = off).
func WithMinP(p float32) GenerateOption { return func(c *GenerateConfig) { c.MinP = p } }

// WithStopTokens ends generation at any of these token ids (in addition to the model's
// end-of-sequence tokens); the stop token itself is not yielded.
func WithStopTokens(ids ...int32) GenerateOption {
	return func(c *GenerateConfig) { c.StopTokens = append([]int32(nil), ids...) }
}

// WithStopStrings ends generation before the first of these strings appears in the text.
func WithStopStrings(s ...string) GenerateOption {
	return func(c *GenerateConfig) { c.StopStrings = append([]string(nil), s...) }
}

// WithRepeatPenalty penalises tokens seen in the last 20 (> 1 penalises; 0 or 1 = off).
func WithRepeatPenalty(p float32) GenerateOption {
	return func(c *GenerateConfig) { c.RepeatPenalty = p }
}

// WithSeed makes sampling reproducible: the same seed gives the same tokens.
func WithSeed(seed uint64) GenerateOption {
	return func(c *GenerateConfig) { c.Seed, c.HasSeed = seed, true }
}

// WithLogits asks for each token's log-probability in Token.Logprob.
func WithLogits() GenerateOption { return func(c *GenerateConfig) { c.ReturnLogits = true } }

// WithTemplateName selects a named chat template of the model's tokenizer_config.json
// (e.g. "tool_use") for Chat, ApplyChatTemplate and NewSession.
func WithTemplateName(name string) GenerateOption {
	return func(c *GenerateConfig) { c.TemplateName = name }
}

// WithTemplateVars passes extra variables to the chat template, e.g.
// map[string]any{"enable_thinking": false} for Qwen3.
func WithTemplateVars(vars map[string]any) GenerateOption {
	return func(c *GenerateConfig) { c.TemplateVars = vars }
}

// WithResult has the call store its outcome in *r when it ends (when the range loop
// ends). Unlike Model.Err and Model.Metrics, which describe whichever call on the model
// ended last, *r belongs to this call alone: use it when goroutines share a model.
func WithResult(r *Result) GenerateOption { return func(c *GenerateConfig) { c.Result = r } }

func applyGenerate(base GenerateConfig, opts []GenerateOption) GenerateConfig {
	cfg := base
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	return cfg
}

// cArena owns C memory for one call's arguments.
type cArena struct{ ptrs []unsafe.Pointer }

func ptr[T any](p *T) unsafe.Pointer { return unsafe.Pointer(p) }

func (a *cArena) alloc(size uintptr) unsafe.Pointer {
	p := C.calloc(1, C.size_t(size))
	if p == nil {
		panic("mlx: out of memory")
	}
	a.ptrs = append(a.ptrs, p)
	return p
}

func (a *cArena) free() {
	for _, p := range a.ptrs {
		C.free(p)
	}
	a.ptrs = nil
}

// generateParams builds the C generation parameters in a's memory.
func (c *GenerateConfig) generateParams(a *cArena) (*C.mlxrun_generate_params, error) {
	if c.MaxTokens < 0 || c.MaxTokens > math.MaxUint32 {
		return nil, invalid("max tokens " + strconv.Itoa(c.MaxTokens) + " is out of range")
	}
	if c.TopK < 0 || c.TopK > math.MaxInt32 {
		return nil, invalid("top-k " + strconv.Itoa(c.TopK) + " is out of range (0 = off)")
	}
	p := (*C.mlxrun_generate_params)(a.alloc(C.sizeof_mlxrun_generate_params))
	*p = C.mlxrun_generate_default_params()
	p.max_tokens = C.uint32_t(c.MaxTokens)
	p.temperature = C.float(c.Temperature)
	p.top_k = C.int32_t(c.TopK)
	if c.TopP != 0 {
		p.top_p = C.float(c.TopP)
	}
	p.min_p = C.float(c.MinP)
	if c.RepeatPenalty != 0 {
		p.repetition_penalty = C.float(c.RepeatPenalty)
	}
	p.seed = C.uint64_t(c.Seed)
	p.has_seed = C.bool(c.HasSeed)
	p.logprobs = C.bool(c.ReturnLogits)
	if n := len(c.StopTokens); n > 0 {
		ids := unsafe.Slice((*C.int32_t)(a.alloc(uintptr(n)*C.sizeof_int32_t)), n)
		for i, id := range c.StopTokens {
			ids[i] = C.int32_t(id)
		}
		p.stop_tokens = &ids[0]
		p.n_stop_tokens = C.size_t(n)
	}
	if n := len(c.StopStrings); n > 0 {
		strs := unsafe.Slice((**C.char)(a.alloc(uintptr(n)*unsafe.Sizeof((*C.char)(nil)))), n)
		for i, s := range c.StopStrings {
			cs, err := a.cString(s, "stop string")
			if err != nil {
				return nil, err
			}
			strs[i] = cs
		}
		p.stop_strings = &strs[0]
		p.n_stop_strings = C.size_t(n)
	}
	return p, nil
}

// chatParams builds the C chat-template parameters in a's memory.
func (c *GenerateConfig) chatParams(a *cArena) (*C.mlxrun_chat_params, error) {
	p := (*C.mlxrun_chat_params)(a.alloc(C.sizeof_mlxrun_chat_params))
	*p = C.mlxrun_chat_default_params()
	if c.TemplateName != "" {
		s, err := a.cString(c.TemplateName, "template name")
		if err != nil {
			return nil, err
		}
		p.template_name = s
	}
	if c.TemplateVars != nil {
		js, err := json.Marshal(c.TemplateVars)
		if err != nil {
			return nil, invalid("template variables: " + err.Error())
		}
		s, err := a.cString(string(js), "template variables")
		if err != nil {
			return nil, err
		}
		p.template_kwargs_json = s
	}
	return p, nil
}

// messages copies msgs into a C array in a's memory (NULL when empty).
func (a *cArena) messages(msgs []Message) (*C.mlxrun_message, C.size_t, error) {
	if len(msgs) == 0 {
		return nil, 0, nil
	}
	arr := unsafe.Slice((*C.mlxrun_message)(a.alloc(uintptr(len(msgs))*C.sizeof_mlxrun_message)), len(msgs))
	for i, m := range msgs {
		role, err := a.cString(m.Role, "message role")
		if err != nil {
			return nil, 0, err
		}
		content, err := a.cString(m.Content, "message content")
		if err != nil {
			return nil, 0, err
		}
		arr[i].role, arr[i].content = role, content
	}
	return &arr[0], C.size_t(len(msgs)), nil
}
