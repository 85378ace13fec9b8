package mlx

/*
#include "bridge.h"
*/
import "C"

import (
	"context"
	"iter"
	"sync"
	"sync/atomic"
)

// Session is a conversation that keeps its KV cache between turns: each Send computes
// only the prompt tokens after the longest prefix already in the cache
// (Metrics().CachedPromptTokens says how many were reused). A Session belongs to its
// Model; closing the Model closes it. Its calls run one at a time (a second Send waits
// for the first); sessions of one model share the model's generation slot.
type Session struct {
	model *Model
	cfg   GenerateConfig // defaults for every Send

	ptr       *C.mlxrun_session // used only by the holder of busy; nil once freed
	busy      chan struct{}     // the session's slot (cap 1); held for good once freed
	closed    chan struct{}     // closed when Close begins
	isClosing atomic.Bool
	closeOnce sync.Once
	freed     chan struct{}

	mu      sync.Mutex
	err     error
	metrics GenerateMetrics
}

// NewSession starts an empty conversation. opts are the defaults of every Send (each
// Send may override them); the template options (WithTemplateVars, WithTemplateName) are
// fixed for the session's lifetime.
func (m *Model) NewSession(opts ...GenerateOption) (*Session, error) {
	cfg := applyGenerate(DefaultGenerateConfig(), opts)
	var a cArena
	defer a.free()
	cp, err := cfg.chatParams(&a)
	if err != nil {
		return nil, err
	}
	if err := m.enter(); err != nil {
		return nil, err
	}
	defer m.exit()
	var out *C.mlxrun_session
	if err := m.callOn(func() C.enum_mlxrun_status { return C.mlxrun_session_new(m.ptr, cp, &out) }); err != nil {
		return nil, err
	}
	s := &Session{
		model:  m,
		cfg:    cfg,
		ptr:    out,
		busy:   make(chan struct{}, 1),
		closed: make(chan struct{}),
		freed:  make(chan struct{}),
	}
	m.mu.Lock()
	m.sessions[s] = struct{}{}
	m.mu.Unlock()
	return s, nil
}

// acquire takes the session's slot.
func (s *Session) acquire(ctx context.Context) error {
	select {
	case s.busy <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closed:
		return ErrClosed
	case <-s.model.closing:
		return ErrClosed
	}
	if s.isClosing.Load() || s.model.isClosing.Load() {
		s.release()
		return ErrClosed
	}
	return nil
}

func (s *Session) release() { <-s.busy }

// do runs f with the model registered and the session's slot held.
func (s *Session) do(f func() error) error {
	if err := s.model.enter(); err != nil {
		return err
	}
	defer s.model.exit()
	if err := s.acquire(context.Background()); err != nil {
		return err
	}
	defer s.release()
	return f()
}

// Send adds msg to the conversation (usually Role "user") and streams the assistant's
// reply, which then joins the conversation. On an error the conversation is unchanged.
// Cancellation, breaking out of the loop and errors work as in Model.Generate; Err and
// Metrics of the session (not of the model) report the outcome.
func (s *Session) Send(ctx context.Context, msg Message, opts ...GenerateOption) iter.Seq[Token] {
	cfg := applyGenerate(s.cfg, opts)
	return func(yield func(Token) bool) {
		res := s.model.run(ctx, cfg, s, func(a *cArena, p *C.mlxrun_generate_params) (cCall, error) {
			role, err := a.cString(msg.Role, "message role")
			if err != nil {
				return nil, err
			}
			content, err := a.cString(msg.Content, "message content")
			if err != nil {
				return nil, err
			}
			return func(h C.uintptr_t, fr *C.enum_mlxrun_finish_reason) C.enum_mlxrun_status {
				return C.mlxrun_go_session_send(s.ptr, role, content, p, h, fr)
			}, nil
		}, yield)
		s.mu.Lock()
		s.err = res.Err
		if res.FinishReason != FinishNone {
			s.metrics = res.Metrics
		}
		s.mu.Unlock()
	}
}

// Add appends msg to the conversation without generating (a system prompt, or earlier
// turns to replay).
func (s *Session) Add(msg Message) error {
	var a cArena
	defer a.free()
	role, err := a.cString(msg.Role, "message role")
	if err != nil {
		return err
	}
	content, err := a.cString(msg.Content, "message content")
	if err != nil {
		return err
	}
	return s.do(func() error {
		return s.model.callOn(func() C.enum_mlxrun_status { return C.mlxrun_session_add_message(s.ptr, role, content) })
	})
}

// Len is the number of messages in the conversation (0 once closed).
func (s *Session) Len() int {
	n := 0
	_ = s.do(func() error {
		n = int(C.mlxrun_session_message_count(s.ptr))
		return nil
	})
	return n
}

// Reset forgets the conversation and frees its cache; the session starts over.
func (s *Session) Reset() error {
	return s.do(func() error {
		return s.model.callOn(func() C.enum_mlxrun_status { return C.mlxrun_session_reset(s.ptr) })
	})
}

// Err is the error of the session's most recent Send (see Model.Err).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Metrics are the measurements of the session's most recent Send that ran.
func (s *Session) Metrics() GenerateMetrics {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.metrics
}

// Close stops a running Send (before its next token), waits for it, and frees the
// session and its cache. It is idempotent; later calls on the session return ErrClosed.
func (s *Session) Close() error {
	s.shutdown()
	return nil
}

// shutdown frees the session once: the first caller to get the slot keeps it for good
// and frees; everyone else waits for that.
func (s *Session) shutdown() {
	s.closeOnce.Do(func() {
		s.isClosing.Store(true)
		close(s.closed)
	})
	select {
	case s.busy <- struct{}{}:
		s.model.w.do(func() { C.mlxrun_session_free(s.ptr) })
		s.ptr = nil
		close(s.freed)
		s.model.mu.Lock()
		delete(s.model.sessions, s)
		s.model.mu.Unlock()
	case <-s.freed:
	}
}
