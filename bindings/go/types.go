package mlx

/*
#include "bridge.h"
*/
import "C"

import "time"

// Token is one piece of streamed output.
type Token struct {
	// ID is the generated token id, or -1 for a last piece of text that no single token
	// produced (text held back while it might have begun a stop string).
	ID int32
	// Text is the token's new text: whole UTF-8 characters only, so it may be empty
	// while a character spans several tokens.
	Text string
	// Logprob is the token's log-probability when WithLogits was given, else 0.
	Logprob float32
}

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"` // "system", "user", "assistant", or any role the template knows
	Content string `json:"content"`
}

// GenerateMetrics measures one generation.
type GenerateMetrics struct {
	PromptTokens int // tokens in the prompt, cached ones included
	// CachedPromptTokens of the prompt came from a Session's KV cache instead of being
	// computed (always 0 outside sessions).
	CachedPromptTokens int
	GeneratedTokens    int

	PrefillDuration time.Duration // until the first token
	DecodeDuration  time.Duration // from the first token to the end
	TotalDuration   time.Duration

	PrefillTokensPerSec float64
	DecodeTokensPerSec  float64

	PeakMemoryBytes   uint64 // MLX's peak memory during the call
	ActiveMemoryBytes uint64 // MLX's active memory at its end

	// GPUUtilizationAvailable says whether the GPU's utilisation was sampled during the
	// call (Linux with an NVIDIA GPU and its driver's NVML; never on the CPU or macOS).
	GPUUtilizationAvailable bool
	GPUUtilizationMean      float64 // percent of time a kernel ran, mean of 50 ms samples; 0 if unavailable
	GPUUtilizationMax       float64 // highest sample, percent; 0 if unavailable
}

func metricsFromC(m *C.mlxrun_metrics) GenerateMetrics {
	prefill := time.Duration(float64(m.prefill_seconds) * float64(time.Second))
	decode := time.Duration(float64(m.decode_seconds) * float64(time.Second))
	return GenerateMetrics{
		PromptTokens:        int(m.prompt_tokens),
		CachedPromptTokens:  int(m.cached_prompt_tokens),
		GeneratedTokens:     int(m.generated_tokens),
		PrefillDuration:     prefill,
		DecodeDuration:      decode,
		TotalDuration:       prefill + decode,
		PrefillTokensPerSec: float64(m.prefill_tokens_per_second),
		DecodeTokensPerSec:  float64(m.decode_tokens_per_second),
		PeakMemoryBytes:     uint64(m.peak_memory),
		ActiveMemoryBytes:   uint64(m.active_memory),

		GPUUtilizationAvailable: bool(m.gpu_utilization_available),
		GPUUtilizationMean:      float64(m.gpu_utilization_mean),
		GPUUtilizationMax:       float64(m.gpu_utilization_max),
	}
}

// ModelInfo describes a loaded model.
type ModelInfo struct {
	Architecture string // model_type from config.json: "llama", "qwen2", "qwen3", "gemma3_text", ...
	VocabSize    int
	NumLayers    int
	HiddenSize   int
	// QuantBits and QuantGroup are 0: the C API does not report quantization yet.
	QuantBits  int
	QuantGroup int

	NumHeads              int
	NumKVHeads            int
	HeadDim               int
	MaxPositionEmbeddings int   // the model's own maximum context (0 when its config has none)
	ContextLength         int   // the context length in force (WithContextLength, else the above)
	DType                 DType // the dtype the model computes in
	TiedEmbeddings        bool  // the output head shares the input embedding
}

// FinishReason says why a generation ended.
type FinishReason int

const (
	// FinishNone: the call did not run, or failed (see Result.Err).
	FinishNone FinishReason = iota
	// FinishStop: an end-of-sequence, end-of-turn or stop token.
	FinishStop
	// FinishStopString: a stop string.
	FinishStopString
	// FinishLength: MaxTokens or the context length was reached.
	FinishLength
	// FinishCancelled: the caller stopped it — a break out of the range loop (Err nil),
	// a cancelled context (Err is ctx.Err()) or Close (Err is ErrClosed).
	FinishCancelled
)

func (f FinishReason) String() string {
	switch f {
	case FinishStop:
		return "stop"
	case FinishStopString:
		return "stop string"
	case FinishLength:
		return "length"
	case FinishCancelled:
		return "cancelled"
	}
	return "none"
}

// Result is one call's outcome (see WithResult).
type Result struct {
	Err          error // nil after a normal end or a break out of the loop
	Metrics      GenerateMetrics
	FinishReason FinishReason
}
