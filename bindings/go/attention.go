package mlx

/*
#include "bridge.h"
*/
import "C"

import (
	"context"
	"unsafe"
)

// AttentionSnapshot holds the post-RoPE keys and queries of every attention layer over a
// prompt, in go-inference's shape.
//
// Every layer gives all SeqLen prompt positions, as its attention computed them (after
// the per-head norms and rotary embedding, before the KV cache write): also Gemma 3's
// sliding-window layers, whose cache keeps only the window.
type AttentionSnapshot struct {
	NumLayers     int
	NumHeads      int // key/value heads (fewer than the query heads under GQA)
	SeqLen        int // prompt tokens, BOS included when the tokenizer adds it
	HeadDim       int
	NumQueryHeads int           // query heads (0 when queries were not captured)
	Keys          [][][]float32 // [layer][kv head] -> SeqLen*HeadDim values, position-major
	Queries       [][][]float32 // [layer][query head] -> SeqLen*HeadDim values; nil if not captured
	Architecture  string        // the model's model_type
}

// HasQueries reports whether queries were captured (always, for this library's models).
func (s *AttentionSnapshot) HasQueries() bool { return s != nil && len(s.Queries) > 0 }

// InspectAttention runs the prefill of prompt (encoded as Generate encodes it) on fresh
// caches and returns every layer's keys and queries. Nothing is generated or sampled, so
// the options (accepted for go-inference's signature) change nothing; the prompt goes
// through in the library's default prefill chunks of 2048 tokens, and the model's context
// length applies. Metrics are unchanged. It waits for a running generation on the model;
// cancelling ctx or Close stops it between chunks.
func (m *Model) InspectAttention(ctx context.Context, prompt string, opts ...GenerateOption) (*AttentionSnapshot, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if prompt == "" {
		return nil, invalid("the prompt is empty")
	}
	cfg := applyGenerate(DefaultGenerateConfig(), opts)
	a := &cArena{}
	defer a.free()
	params, err := cfg.generateParams(a)
	if err != nil {
		return nil, err
	}
	cp, err := a.cString(prompt, "prompt")
	if err != nil {
		return nil, err
	}
	var snap *AttentionSnapshot
	err = m.blockingCall(ctx, func() error {
		var h *C.mlxrun_attention_snapshot
		if err := lastError(C.mlxrun_inspect_attention(m.ptr, cp, params, &h)); err != nil {
			return err
		}
		defer C.mlxrun_attention_snapshot_free(h)
		snap, err = snapshotFromC(h)
		return err
	})
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	return snap, nil
}

// snapshotFromC copies a C snapshot into Go memory (on the worker's thread, where the
// library keeps its error message).
func snapshotFromC(h *C.mlxrun_attention_snapshot) (*AttentionSnapshot, error) {
	var info C.mlxrun_attention_info
	info.struct_size = C.sizeof_mlxrun_attention_info
	if err := lastError(C.mlxrun_attention_snapshot_get_info(h, &info)); err != nil {
		return nil, err
	}
	s := &AttentionSnapshot{
		NumLayers:    int(info.num_layers),
		NumHeads:     int(info.num_heads),
		SeqLen:       int(info.seq_len),
		HeadDim:      int(info.head_dim),
		Architecture: C.GoString(&info.architecture[0]),
	}
	read := func(heads int, get func(l, h C.uint32_t, data **C.float, n *C.size_t) C.enum_mlxrun_status) ([][][]float32, error) {
		out := make([][][]float32, s.NumLayers)
		for l := range out {
			out[l] = make([][]float32, heads)
			for hd := range out[l] {
				var data *C.float
				var n C.size_t
				if err := lastError(get(C.uint32_t(l), C.uint32_t(hd), &data, &n)); err != nil {
					return nil, err
				}
				out[l][hd] = append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(data)), int(n))...)
			}
		}
		return out, nil
	}
	var err error
	if s.Keys, err = read(s.NumHeads, func(l, hd C.uint32_t, data **C.float, n *C.size_t) C.enum_mlxrun_status {
		return C.mlxrun_attention_snapshot_keys(h, l, hd, data, n)
	}); err != nil {
		return nil, err
	}
	if bool(info.has_queries) {
		s.NumQueryHeads = int(info.num_query_heads)
		if s.Queries, err = read(s.NumQueryHeads, func(l, hd C.uint32_t, data **C.float, n *C.size_t) C.enum_mlxrun_status {
			return C.mlxrun_attention_snapshot_queries(h, l, hd, data, n)
		}); err != nil {
			return nil, err
		}
	}
	return s, nil
}
