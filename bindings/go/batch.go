package mlx

/*
#include "bridge.h"
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"unsafe"
)

// ClassifyResult is one prompt's next token (Classify).
type ClassifyResult struct {
	// Token is the chosen next token (greedy unless sampling options say otherwise);
	// its Logprob is set with WithLogits. Text is the token's text.
	Token Token
	// Logits are the prompt's last-position logits over the whole vocabulary, with
	// WithLogits; nil otherwise.
	Logits []float32
	// Err is this prompt's own failure (an empty prompt, one longer than the context);
	// the other prompts are not affected.
	Err error
}

// BatchResult is one prompt's generation (BatchGenerate).
type BatchResult struct {
	Tokens       []Token
	FinishReason FinishReason
	// Err is this prompt's own failure, or ctx.Err() / ErrClosed when the batch was
	// stopped (Tokens then holds what was generated before).
	Err error
}

// WithBatchSize caps how many prompts Classify and BatchGenerate compute together
// (0, the default: chosen from MLX's memory limit and the prompt lengths).
func WithBatchSize(n int) GenerateOption { return func(c *GenerateConfig) { c.BatchSize = n } }

// batchCall runs a blocking batch call on m: it takes the generation slot, and cancels
// the library's work when ctx is done or Close begins.
func (m *Model) batchCall(ctx context.Context, prompts []string, cfg GenerateConfig,
	call func(a *cArena, prompts **C.char, params *C.mlxrun_generate_params, batch *C.mlxrun_batch_params) C.enum_mlxrun_status) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(prompts) == 0 {
		return invalid("no prompts given")
	}
	if cfg.BatchSize < 0 || cfg.BatchSize > 1<<31 {
		return invalid("batch size out of range (0 = automatic)")
	}
	a := &cArena{}
	defer a.free()
	params, err := cfg.generateParams(a)
	if err != nil {
		return err
	}
	cps := unsafe.Slice((**C.char)(a.alloc(uintptr(len(prompts))*unsafe.Sizeof((*C.char)(nil)))), len(prompts))
	for i, p := range prompts {
		if cps[i], err = a.cString(p, "prompt"); err != nil {
			return err
		}
	}
	batch := (*C.mlxrun_batch_params)(a.alloc(C.sizeof_mlxrun_batch_params))
	*batch = C.mlxrun_batch_default_params()
	batch.max_batch_size = C.uint32_t(cfg.BatchSize)
	batch.return_logits = C.bool(cfg.ReturnLogits)

	return m.blockingCall(ctx, func() error {
		if st := call(a, &cps[0], params, batch); st != C.MLXRUN_OK {
			return lastError(st)
		}
		return nil
	})
}

// blockingCall runs f on m's worker holding the generation slot (one call at a time per
// model), and cancels the library's work when ctx is done or Close begins.
func (m *Model) blockingCall(ctx context.Context, f func() error) error {
	if err := m.enter(); err != nil {
		return err
	}
	defer m.exit()
	select {
	case m.gen <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-m.closing:
		return ErrClosed
	}
	defer func() { <-m.gen }()
	callDone := make(chan struct{})
	watcherDone := make(chan struct{})
	stopCtx := context.AfterFunc(ctx, func() {
		defer close(watcherDone)
		cancelUntil(m.ptr, callDone)
	})
	closeDone := make(chan struct{})
	go func() {
		defer close(closeDone)
		select {
		case <-m.closing:
			cancelUntil(m.ptr, callDone)
		case <-callDone:
		}
	}()
	var err error
	m.w.do(func() { err = f() })
	close(callDone)
	if !stopCtx() {
		<-watcherDone
	}
	<-closeDone
	return err
}

// rowError is a row's own status as an error (nil for MLXRUN_OK).
func rowError(status C.int32_t, msg *C.char) error {
	if status == C.MLXRUN_OK {
		return nil
	}
	return &Error{Status: Status(status), Message: C.GoString(msg)}
}

// Classify returns the next token after each prompt, computing prompts in batches with
// one forward pass each (the output head only at each prompt's last position). Options:
// sampling (greedy by default), WithLogits (each token's log-probability and the full
// last-position logits), WithBatchSize. The error is the call's (a cancelled ctx, a
// closed model, MLX failing); a prompt's own failure is in its result's Err.
func (m *Model) Classify(ctx context.Context, prompts []string, opts ...GenerateOption) ([]ClassifyResult, error) {
	cfg := applyGenerate(DefaultGenerateConfig(), opts)
	n := len(prompts)
	vocab := m.info.VocabSize
	var cres []C.mlxrun_classify_result
	var logits []float32
	err := m.batchCall(ctx, prompts, cfg, func(a *cArena, cp **C.char, p *C.mlxrun_generate_params, b *C.mlxrun_batch_params) C.enum_mlxrun_status {
		res := (*C.mlxrun_classify_result)(a.alloc(uintptr(n) * C.sizeof_mlxrun_classify_result))
		cres = unsafe.Slice(res, n)
		var lp *C.float
		if cfg.ReturnLogits {
			lp = (*C.float)(a.alloc(uintptr(n*vocab) * C.sizeof_float))
			defer func() { logits = append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(lp)), n*vocab)...) }()
		}
		st := C.mlxrun_classify(m.ptr, cp, C.size_t(n), p, b, res, lp)
		// Read back while the arena is alive.
		cres = append([]C.mlxrun_classify_result(nil), cres...)
		return st
	})
	if err != nil {
		return nil, err
	}
	if ctx != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	out := make([]ClassifyResult, n)
	for i := range cres {
		r := &cres[i]
		if e := rowError(r.status, &r.error[0]); e != nil {
			out[i].Err = e
			out[i].Token.ID = -1
			continue
		}
		out[i].Token.ID = int32(r.token)
		if text, err := m.Detokenize([]int32{int32(r.token)}, false); err == nil {
			out[i].Token.Text = text
		}
		if cfg.ReturnLogits {
			out[i].Token.Logprob = float32(r.logprob)
			out[i].Logits = logits[i*vocab : (i+1)*vocab : (i+1)*vocab]
		}
	}
	return out, nil
}

// batchRows collects each row's tokens as the library streams them.
type batchRows struct {
	ctx     context.Context
	closing <-chan struct{}
	logits  bool
	tokens  [][]Token
}

//export mlxrunGoRowToken
func mlxrunGoRowToken(index C.size_t, tok *C.mlxrun_token, handle C.uintptr_t) C.bool {
	b, ok := cgo.Handle(handle).Value().(*batchRows)
	if !ok || int(index) >= len(b.tokens) {
		return false
	}
	t := Token{ID: int32(tok.id)}
	if tok.text_len > 0 {
		t.Text = C.GoStringN(tok.text, C.int(tok.text_len))
	}
	if b.logits && t.ID >= 0 {
		t.Logprob = float32(tok.logprob)
	}
	if t.ID >= 0 || t.Text != "" {
		b.tokens[index] = append(b.tokens[index], t)
	}
	select {
	case <-b.closing:
		return false
	default:
	}
	return C.bool(b.ctx.Err() == nil)
}

// BatchGenerate generates a continuation of every prompt with continuous batching: rows
// that finish leave the batch and waiting prompts join it. Greedy output of each row
// equals the prompt generated alone. Cancelling ctx (or Close) stops every row; their
// results then hold the tokens generated so far and Err = ctx.Err() (ErrClosed).
func (m *Model) BatchGenerate(ctx context.Context, prompts []string, opts ...GenerateOption) ([]BatchResult, error) {
	cfg := applyGenerate(DefaultGenerateConfig(), opts)
	if ctx == nil {
		ctx = context.Background()
	}
	n := len(prompts)
	rows := &batchRows{ctx: ctx, closing: m.closing, logits: cfg.ReturnLogits, tokens: make([][]Token, n)}
	h := cgo.NewHandle(rows)
	defer h.Delete()
	var cres []C.mlxrun_batch_result
	err := m.batchCall(ctx, prompts, cfg, func(a *cArena, cp **C.char, p *C.mlxrun_generate_params, b *C.mlxrun_batch_params) C.enum_mlxrun_status {
		res := (*C.mlxrun_batch_result)(a.alloc(uintptr(n) * C.sizeof_mlxrun_batch_result))
		st := C.mlxrun_go_batch_generate(m.ptr, cp, C.size_t(n), p, b, C.uintptr_t(h), res)
		cres = append([]C.mlxrun_batch_result(nil), unsafe.Slice(res, n)...)
		return st
	})
	if err != nil {
		return nil, err
	}
	out := make([]BatchResult, n)
	for i := range cres {
		r := &cres[i]
		out[i].Tokens = rows.tokens[i]
		if e := rowError(r.status, &r.error[0]); e != nil {
			out[i].Err = e
			continue
		}
		switch r.finish_reason {
		case C.MLXRUN_FINISH_STOP:
			out[i].FinishReason = FinishStop
		case C.MLXRUN_FINISH_STOP_STRING:
			out[i].FinishReason = FinishStopString
		case C.MLXRUN_FINISH_LENGTH:
			out[i].FinishReason = FinishLength
		default:
			out[i].FinishReason = FinishCancelled
			if m.isClosing.Load() {
				out[i].Err = ErrClosed
			} else if ctx.Err() != nil {
				out[i].Err = ctx.Err()
			}
		}
	}
	return out, nil
}
