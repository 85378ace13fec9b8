package mlx

/*
#include "bridge.h"
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"time"
)

// How a generation runs (Generate, Chat, Session.Send):
//
// The goroutine that ranges over the sequence (the consumer) converts the arguments into
// C memory, registers with the model (enter), takes the session's slot and the model's
// generation slot, then starts a producer goroutine that has the model's worker thread
// (thread.go) make the blocking C call. The C library calls back into Go on that thread
// for every token; the callback hands the token to the consumer over a channel and
// waits until the consumer's loop body has run (so a break stops generation before the
// next token), then answers the library with "go on" or "stop". The consumer's loop body therefore never runs inside
// a C frame: a panic or runtime.Goexit there (t.Fatal in a test) unwinds normally while
// the producer tells the library to stop.
//
// The producer owns what the C call needs until it returns: the arguments' C memory,
// the generation slot, the session's slot, the registration with the model and the
// context watcher (context.AfterFunc → mlxrun_cancel). It releases them before closing
// done, so Close — which waits for registrations — never frees memory that C still
// uses, and a late mlxrun_cancel never reaches the next call's generation.

// cCall makes the C call, passing handle as the callback's user data.
type cCall func(handle C.uintptr_t, finish *C.enum_mlxrun_finish_reason) C.enum_mlxrun_status

// builder converts a call's arguments into a's C memory and returns the C call.
type builder func(a *cArena, p *C.mlxrun_generate_params) (cCall, error)

// handoff passes values from a C callback (the producer, on the C call's thread) to a
// range loop (the consumer) one at a time: the producer waits until the loop body has
// run, so that a break, a cancelled context or a Close stops the C call before its next
// value. Generation hands over tokens, training its progress reports.
type handoff[T any] struct {
	ctx        context.Context
	items      chan T        // producer → consumer, one value at a time
	resume     chan struct{} // consumer → producer: the loop body has run, go on
	quit       chan struct{} // closed when the consumer stops ranging
	closing    <-chan struct{}
	sessClosed <-chan struct{} // nil outside sessions
}

func newHandoff[T any](ctx context.Context, closing, sessClosed <-chan struct{}) handoff[T] {
	return handoff[T]{
		ctx:        ctx,
		items:      make(chan T),
		resume:     make(chan struct{}),
		quit:       make(chan struct{}),
		closing:    closing,
		sessClosed: sessClosed,
	}
}

// stopRequested reports whether the context is done or a Close has begun.
func (s *handoff[T]) stopRequested() bool {
	if s.ctx.Err() != nil {
		return true
	}
	select {
	case <-s.closing:
		return true
	case <-s.sessClosed:
		return true
	default:
		return false
	}
}

// deliver hands v to the consumer and waits for its loop body; false stops the C call.
func (s *handoff[T]) deliver(v T) bool {
	if s.stopRequested() {
		return false
	}
	select {
	case s.items <- v:
	case <-s.quit:
		return false
	case <-s.ctx.Done():
		return false
	case <-s.closing:
		return false
	case <-s.sessClosed:
		return false
	}
	select {
	case <-s.resume:
	case <-s.quit:
		return false
	case <-s.ctx.Done():
		return false
	case <-s.closing:
		return false
	case <-s.sessClosed:
		return false
	}
	return !s.stopRequested()
}

// consume runs yield on each value until done is closed (the C call has returned) or
// yield returns false; it reports whether yield stopped it (the consumer broke out).
// Either way the producer is released (quit) and consume waits for done.
func (s *handoff[T]) consume(yield func(T) bool, done <-chan struct{}, onQuit func()) (broke bool) {
	defer func() {
		close(s.quit)
		if onQuit != nil {
			onQuit()
		}
		<-done
	}()
	for {
		select {
		case v := <-s.items:
			if !yield(v) {
				return true
			}
			select {
			case s.resume <- struct{}{}:
			case <-done:
				return false
			}
		case <-done:
			return false
		}
	}
}

// stream is what the token callback reaches through its cgo.Handle.
type stream struct {
	handoff[Token]
	logits bool
}

//export mlxrunGoToken
func mlxrunGoToken(tok *C.mlxrun_token, handle C.uintptr_t) C.bool {
	s, ok := cgo.Handle(handle).Value().(*stream)
	if !ok {
		return false
	}
	t := Token{ID: int32(tok.id)}
	if tok.text_len > 0 {
		t.Text = C.GoStringN(tok.text, C.int(tok.text_len))
	}
	if t.ID < 0 && t.Text == "" {
		return C.bool(!s.stopRequested())
	}
	if s.logits && t.ID >= 0 {
		t.Logprob = float32(tok.logprob)
	}
	return C.bool(s.deliver(t))
}

// run runs one generation on m (in sess when not nil), yielding its tokens.
func (m *Model) run(ctx context.Context, cfg GenerateConfig, sess *Session, build builder, yield func(Token) bool) (res Result) {
	if cfg.Result != nil {
		defer func() { *cfg.Result = res }()
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return Result{Err: err}
	}

	// Until the producer starts, this goroutine owns the arguments, the registration
	// and the slots; each step undoes the earlier ones on failure.
	a := &cArena{}
	params, err := cfg.generateParams(a)
	if err != nil {
		a.free()
		return Result{Err: err}
	}
	callC, err := build(a, params)
	if err != nil {
		a.free()
		return Result{Err: err}
	}
	if err := m.enter(); err != nil {
		a.free()
		return Result{Err: err}
	}
	var sessClosed <-chan struct{}
	if sess != nil {
		sessClosed = sess.closed
		if err := sess.acquire(ctx); err != nil {
			m.exit()
			a.free()
			return Result{Err: err}
		}
	}
	releaseSession := func() {
		if sess != nil {
			sess.release()
		}
	}
	select {
	case m.gen <- struct{}{}:
	case <-ctx.Done():
		err = ctx.Err()
	case <-m.closing:
		err = ErrClosed
	case <-sessClosed:
		err = ErrClosed
	}
	if err == nil && (m.isClosing.Load() || (sess != nil && sess.isClosing.Load())) {
		<-m.gen
		err = ErrClosed
	}
	if err != nil {
		releaseSession()
		m.exit()
		a.free()
		return Result{Err: err}
	}

	s := &stream{handoff: newHandoff[Token](ctx, m.closing, sessClosed), logits: cfg.ReturnLogits}
	h := cgo.NewHandle(s)
	defer h.Delete()

	// A cancelled context also stops a generation that is still in prefill. The library
	// forgets a cancel that comes before its generation starts (while it tokenizes or
	// renders the template), so the watcher repeats it until the C call returns.
	callDone := make(chan struct{})
	watcherDone := make(chan struct{})
	stopWatcher := context.AfterFunc(ctx, func() {
		defer close(watcherDone)
		cancelUntil(m.ptr, callDone)
	})

	var (
		status  C.enum_mlxrun_status
		callErr error
		finish  C.enum_mlxrun_finish_reason = C.MLXRUN_FINISH_STOP
		cm      C.mlxrun_metrics
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.w.do(func() {
			status = callC(C.uintptr_t(h), &finish)
			if status != C.MLXRUN_OK {
				callErr = lastError(status)
			} else {
				// This call's metrics: the slot is still held, so no other call has ended.
				cm.struct_size = C.sizeof_mlxrun_metrics
				C.mlxrun_model_metrics(m.ptr, &cm)
			}
		})
		close(callDone)
		if !stopWatcher() {
			<-watcherDone
		}
		<-m.gen
		releaseSession()
		m.exit()
		a.free()
	}()

	broke := s.consume(yield, done, nil)

	if callErr != nil {
		return Result{Err: callErr}
	}
	res.Metrics = metricsFromC(&cm)
	switch finish {
	case C.MLXRUN_FINISH_STOP:
		res.FinishReason = FinishStop
	case C.MLXRUN_FINISH_STOP_STRING:
		res.FinishReason = FinishStopString
	case C.MLXRUN_FINISH_LENGTH:
		res.FinishReason = FinishLength
	default: // the callback said stop, or mlxrun_cancel
		res.FinishReason = FinishCancelled
		switch {
		case broke:
		case m.isClosing.Load() || (sess != nil && sess.isClosing.Load()):
			res.Err = ErrClosed
		case ctx.Err() != nil:
			res.Err = ctx.Err()
		}
	}
	return res
}

// cancelUntil asks the generation running on model to stop, again every few
// milliseconds until done is closed: a cancel that reaches the library before its
// generation has started is forgotten when it starts.
func cancelUntil(model *C.mlxrun_model, done <-chan struct{}) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		C.mlxrun_cancel(model)
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}
