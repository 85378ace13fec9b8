package mlx

/*
#include "bridge.h"
*/
import "C"

import (
	"context"
	"iter"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Model is a loaded model and its tokenizer. It is safe for concurrent use; see the
// package documentation for how calls are scheduled.
type Model struct {
	// ptr is the C handle. It is read only between enter and exit, and freed by Close
	// once no call is in flight.
	ptr  *C.mlxrun_model
	info ModelInfo
	w    *worker // the OS thread all of the model's MLX work runs on (thread.go)
	// rank and size: this process's place in the group the model is sharded over.
	rank, size int

	gen       chan struct{} // the generation slot: holding it = running a generation (cap 1)
	closing   chan struct{} // closed when Close begins
	isClosing atomic.Bool
	inflight  sync.WaitGroup // calls that may touch ptr
	freed     chan struct{}  // closed when Close has freed everything

	// adapterMu orders the calls that put an adapter on the model or take it off
	// (ApplyLoRA, LoadAdapter, RemoveAdapter, Adapter.Save) with the record of which
	// *Adapter is on the model.
	adapterMu sync.Mutex
	adapter   *Adapter // the adapter ApplyLoRA put on the model; nil after Load/RemoveAdapter

	mu       sync.Mutex
	closed   bool
	sessions map[*Session]struct{}
	err      error
	metrics  GenerateMetrics
}

// LoadModel loads the Hugging Face model folder at path (config.json, *.safetensors,
// tokenizer.json, tokenizer_config.json). Errors carry the library's status and message:
// ErrConfig for a missing folder or config.json or an unsupported model_type,
// ErrWeights for missing or truncated weights, ErrTokenizer for tokenizer files,
// ErrInvalidArgument for a bad option.
func LoadModel(path string, opts ...LoadOption) (*Model, error) {
	var cfg LoadConfig
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	params, err := cfg.toC()
	if err != nil {
		return nil, err
	}
	var a cArena
	defer a.free()
	cpath, err := a.cString(path, "model path")
	if err != nil {
		return nil, err
	}
	if cfg.AdapterPath != "" {
		if params.adapter_path, err = a.cString(cfg.AdapterPath, "adapter path"); err != nil {
			return nil, err
		}
	}
	for _, s := range []struct {
		dst       **C.char
		val, what string
	}{{&params.backend, cfg.Backend, "backend"}, {&params.python, cfg.Python, "python"}, {&params.venv, cfg.Venv, "venv"},
		{&params.distributed_backend, cfg.Distributed, "distributed backend"}} {
		if s.val != "" {
			if *s.dst, err = a.cString(s.val, s.what); err != nil {
				return nil, err
			}
		}
	}

	w := newWorker()
	var handle *C.mlxrun_model
	var ci C.mlxrun_model_info
	var rank, size C.int32_t
	w.do(func() {
		if err = lastError(C.mlxrun_model_load(cpath, &params, &handle)); err != nil {
			return
		}
		ci.struct_size = C.sizeof_mlxrun_model_info
		if err = lastError(C.mlxrun_model_get_info(handle, &ci)); err == nil {
			err = lastError(C.mlxrun_model_rank(handle, &rank, &size))
		}
		if err != nil {
			C.mlxrun_model_free(handle)
		}
	})
	if err != nil {
		w.stop()
		return nil, err
	}
	return &Model{
		ptr:  handle,
		w:    w,
		rank: int(rank),
		size: int(size),
		info: ModelInfo{
			Architecture:          C.GoString(&ci.model_type[0]),
			VocabSize:             int(ci.vocab_size),
			NumLayers:             int(ci.num_layers),
			HiddenSize:            int(ci.hidden_size),
			NumHeads:              int(ci.num_heads),
			NumKVHeads:            int(ci.num_kv_heads),
			HeadDim:               int(ci.head_dim),
			MaxPositionEmbeddings: int(ci.max_position_embeddings),
			ContextLength:         int(ci.context_length),
			DType:                 DType(ci.dtype),
			TiedEmbeddings:        bool(ci.tied_embeddings),
		},
		gen:      make(chan struct{}, 1),
		closing:  make(chan struct{}),
		freed:    make(chan struct{}),
		sessions: map[*Session]struct{}{},
	}, nil
}

// enter registers a call that will use the C handle; it fails once Close has begun.
// Every successful enter is paired with one exit.
func (m *Model) enter() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.inflight.Add(1)
	return nil
}

func (m *Model) exit() { m.inflight.Done() }

// Close stops a running generation (before its next token), refuses calls that have not
// started yet, waits for calls in flight to return, then frees the model and its
// sessions. It is idempotent: later calls wait for the first to finish and return nil.
// Every other method returns ErrClosed afterwards (Info and ModelType keep answering).
func (m *Model) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		<-m.freed
		return nil
	}
	m.closed = true
	m.isClosing.Store(true)
	close(m.closing)
	m.mu.Unlock()

	// Stop a generation that is still in prefill (the token callbacks see closing).
	drained := make(chan struct{})
	cancelled := make(chan struct{})
	go func() {
		defer close(cancelled)
		cancelUntil(m.ptr, drained)
	}()
	m.inflight.Wait()
	close(drained)
	<-cancelled

	m.mu.Lock()
	sessions := make([]*Session, 0, len(m.sessions))
	for s := range m.sessions {
		sessions = append(sessions, s)
	}
	m.mu.Unlock()
	for _, s := range sessions {
		s.shutdown()
	}
	m.w.do(func() { C.mlxrun_model_free(m.ptr) })
	m.w.stop()
	m.ptr = nil
	close(m.freed)
	return nil
}

// ModelType is config.json's model_type, e.g. "qwen3", "llama", "gemma3_text".
func (m *Model) ModelType() string { return m.info.Architecture }

// Rank is this process's rank in the group the model is sharded over and the group's
// size (WithDistributed); 0 and 1 for a model loaded whole.
func (m *Model) Rank() (rank, size int) { return m.rank, m.size }

// Info describes the model (read at load; it never waits for a generation).
func (m *Model) Info() ModelInfo { return m.info }

// Metrics are the measurements of the most recent Generate or Chat call on this model
// that ran (a call refused before it started leaves them unchanged).
func (m *Model) Metrics() GenerateMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.metrics
}

// Err is the error of the most recent Generate, Chat or Train call on this model to end:
// nil after a normal end or a break out of the range loop, ctx.Err() after a cancelled
// context, ErrClosed after Close, else the library's *Error.
//
// With several goroutines on one model, Err and Metrics describe whichever call ended
// last; use WithResult for a call's own outcome.
func (m *Model) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func (m *Model) record(r Result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = r.Err
	if r.FinishReason != FinishNone {
		m.metrics = r.Metrics
	}
}

// Generate streams the continuation of prompt (the tokenizer's BOS is added unless the
// prompt starts with it). Nothing runs until the sequence is ranged over; each range
// runs one generation. Breaking out of the loop stops generation before the next token,
// and so does cancelling ctx, after which Err returns ctx.Err().
//
//	for tok := range model.Generate(ctx, "The capital of France is", mlx.WithMaxTokens(32)) {
//		fmt.Print(tok.Text)
//	}
//	if err := model.Err(); err != nil { ... }
func (m *Model) Generate(ctx context.Context, prompt string, opts ...GenerateOption) iter.Seq[Token] {
	cfg := applyGenerate(DefaultGenerateConfig(), opts)
	return func(yield func(Token) bool) {
		res := m.run(ctx, cfg, nil, func(a *cArena, p *C.mlxrun_generate_params) (cCall, error) {
			cp, err := a.cString(prompt, "prompt")
			if err != nil {
				return nil, err
			}
			return func(h C.uintptr_t, fr *C.enum_mlxrun_finish_reason) C.enum_mlxrun_status {
				return C.mlxrun_go_generate(m.ptr, cp, p, h, fr)
			}, nil
		}, yield)
		m.record(res)
	}
}

// Chat streams the assistant's reply to messages, rendered with the model's own chat
// template (WithTemplateVars and WithTemplateName adjust it). Generation also stops at
// the template's end-of-turn token. Otherwise as Generate.
func (m *Model) Chat(ctx context.Context, messages []Message, opts ...GenerateOption) iter.Seq[Token] {
	cfg := applyGenerate(DefaultGenerateConfig(), opts)
	return func(yield func(Token) bool) {
		res := m.run(ctx, cfg, nil, func(a *cArena, p *C.mlxrun_generate_params) (cCall, error) {
			msgs, n, err := a.messages(messages)
			if err != nil {
				return nil, err
			}
			cp, err := cfg.chatParams(a)
			if err != nil {
				return nil, err
			}
			return func(h C.uintptr_t, fr *C.enum_mlxrun_finish_reason) C.enum_mlxrun_status {
				return C.mlxrun_go_chat(m.ptr, msgs, n, cp, p, h, fr)
			}, nil
		}, yield)
		m.record(res)
	}
}

// ApplyChatTemplate renders messages with the model's chat template, ending with the
// assistant's turn header, as Chat would prompt the model. It waits while a generation
// runs on the model.
func (m *Model) ApplyChatTemplate(messages []Message, opts ...GenerateOption) (string, error) {
	cfg := applyGenerate(DefaultGenerateConfig(), opts)
	var a cArena
	defer a.free()
	msgs, n, err := a.messages(messages)
	if err != nil {
		return "", err
	}
	cp, err := cfg.chatParams(&a)
	if err != nil {
		return "", err
	}
	if err := m.enter(); err != nil {
		return "", err
	}
	defer m.exit()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return readText(func(p *C.char, capacity C.size_t, needed *C.size_t) C.enum_mlxrun_status {
		return C.mlxrun_apply_chat_template(m.ptr, msgs, n, cp, p, capacity, needed)
	})
}

// Tokenize encodes text; with addSpecialTokens the tokens the tokenizer adds (such as
// BOS) are included. It never waits for a generation.
func (m *Model) Tokenize(text string, addSpecialTokens bool) ([]int32, error) {
	var a cArena
	defer a.free()
	ct, err := a.cString(text, "text")
	if err != nil {
		return nil, err
	}
	if err := m.enter(); err != nil {
		return nil, err
	}
	defer m.exit()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var n C.size_t
	var ids []int32
	for {
		var p *C.int32_t
		if len(ids) > 0 {
			p = (*C.int32_t)(unsafe.Pointer(&ids[0]))
		}
		st := C.mlxrun_tokenize(m.ptr, ct, C.bool(addSpecialTokens), p, C.size_t(len(ids)), &n)
		if st == C.MLXRUN_OK {
			return ids[:n], nil
		}
		if st == C.MLXRUN_ERR_BUFFER_TOO_SMALL && n == 0 {
			return []int32{}, nil
		}
		if st != C.MLXRUN_ERR_BUFFER_TOO_SMALL || int(n) <= len(ids) {
			return nil, lastError(st)
		}
		ids = make([]int32, n)
	}
}

// Detokenize decodes token ids into text; with skipSpecialTokens special tokens are
// left out. It never waits for a generation.
func (m *Model) Detokenize(ids []int32, skipSpecialTokens bool) (string, error) {
	var a cArena
	defer a.free()
	var cids *C.int32_t
	if len(ids) > 0 {
		s := unsafe.Slice((*C.int32_t)(a.alloc(uintptr(len(ids))*C.sizeof_int32_t)), len(ids))
		for i, id := range ids {
			s[i] = C.int32_t(id)
		}
		cids = &s[0]
	}
	if err := m.enter(); err != nil {
		return "", err
	}
	defer m.exit()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return readText(func(p *C.char, capacity C.size_t, needed *C.size_t) C.enum_mlxrun_status {
		return C.mlxrun_detokenize(m.ptr, cids, C.size_t(len(ids)), C.bool(skipSpecialTokens), p, capacity, needed)
	})
}

// readText runs a C call that copies text into a caller's buffer the "needed size" way:
// first with no buffer, then with one as large as the call asked for. The text may grow
// between calls (a template can print today's date), so it asks again until it fits.
// The caller holds the OS thread locked, so the error message read on failure is this
// call's.
func readText(call func(p *C.char, capacity C.size_t, needed *C.size_t) C.enum_mlxrun_status) (string, error) {
	var needed C.size_t
	var buf []byte
	for {
		var p *C.char
		if len(buf) > 0 {
			p = (*C.char)(unsafe.Pointer(&buf[0]))
		}
		st := call(p, C.size_t(len(buf)), &needed)
		if st == C.MLXRUN_OK {
			return string(buf[:needed-1]), nil
		}
		if st != C.MLXRUN_ERR_BUFFER_TOO_SMALL || int(needed) <= len(buf) {
			return "", lastError(st)
		}
		buf = make([]byte, needed)
	}
}
