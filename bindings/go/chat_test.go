package mlx_test

import (
	"context"
	"errors"
	"testing"

	mlx "mlxrun/bindings/go"
)

// Chat renders the model's template and generates the reply: the same tokens as
// Generate over ApplyChatTemplate's text, up to the end of the turn.
func TestChat(t *testing.T) {
	for _, name := range []string{"qwen3", "llama3"} {
		t.Run(name, func(t *testing.T) {
			m := load(t, name)
			convo := []mlx.Message{{Role: "system", Content: "You are terse."}, {Role: "user", Content: "What is the capital of France?"}}
			rendered, err := m.ApplyChatTemplate(convo)
			if err != nil {
				t.Fatal(err)
			}
			if !contains(rendered, "What is the capital of France?") || !contains(rendered, "You are terse.") {
				t.Fatalf("rendered %q", rendered)
			}
			var r mlx.Result
			chatIDs, chatText := collect(m.Chat(bg, convo, mlx.WithMaxTokens(16), mlx.WithResult(&r)))
			if r.Err != nil || m.Err() != nil {
				t.Fatal(r.Err)
			}
			ref := reference(t, name, rendered, 16)
			n := len(chatIDs)
			if n > len(ref.Tokens) || !equalIDs(chatIDs, ref.Tokens[:n]) {
				t.Fatalf("chat ids %v; the Rust engine over the rendered prompt gave %v", chatIDs, ref.Tokens)
			}
			if n < len(ref.Tokens) && r.FinishReason != mlx.FinishStop {
				t.Fatalf("chat stopped after %d tokens with %v", n, r.FinishReason)
			}
			if len(chatText) > len(ref.Text) || ref.Text[:len(chatText)] != chatText {
				t.Fatalf("chat text %q, Rust %q", chatText, ref.Text)
			}
			if r.Metrics.PromptTokens != len(ref.PromptTokens) {
				t.Fatalf("chat prompt %d tokens, rendered prompt %d", r.Metrics.PromptTokens, len(ref.PromptTokens))
			}
		})
	}
}

func TestChatTemplateOptions(t *testing.T) {
	m := load(t, "qwen3")
	convo := []mlx.Message{{Role: "user", Content: "Name a colour."}}
	plain, err := m.ApplyChatTemplate(convo)
	if err != nil {
		t.Fatal(err)
	}
	noThink, err := m.ApplyChatTemplate(convo, mlx.WithTemplateVars(map[string]any{"enable_thinking": false}))
	if err != nil {
		t.Fatal(err)
	}
	if plain == noThink || !contains(noThink, "<think>") {
		t.Fatalf("enable_thinking=false changed nothing: %q", noThink)
	}
	collect(m.Chat(bg, convo, mlx.WithTemplateName("no-such-template")))
	wantStatus(t, m.Err(), mlx.ErrTemplate, mlx.StatusTemplate, "no-such-template")
	collect(m.Chat(bg, convo, mlx.WithTemplateVars(map[string]any{"bad": func() {}})))
	wantStatus(t, m.Err(), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "template variables")
	collect(m.Chat(bg, []mlx.Message{{Role: "user", Content: "a\x00b"}}))
	wantStatus(t, m.Err(), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "NUL")
	if ids, _ := collect(m.Chat(bg, convo, mlx.WithMaxTokens(4))); len(ids) == 0 && m.Err() != nil {
		t.Fatalf("chat after errors: %v", m.Err())
	}
}

// A session's second turn reuses the first turn's cache, and gives what a fresh Chat
// over the whole conversation gives.
func TestSessionReusesCache(t *testing.T) {
	for _, name := range []string{"qwen3", "llama3"} {
		t.Run(name, func(t *testing.T) {
			m := load(t, name)
			s, err := m.NewSession(mlx.WithMaxTokens(12))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			system := mlx.Message{Role: "system", Content: "You are a terse assistant."}
			if err := s.Add(system); err != nil {
				t.Fatal(err)
			}
			u1 := mlx.Message{Role: "user", Content: "Hello there! Who are you?"}
			ids1, text1 := collect(s.Send(bg, u1))
			if s.Err() != nil || len(ids1) == 0 {
				t.Fatalf("turn 1: %v, %v", ids1, s.Err())
			}
			t1 := s.Metrics()
			if t1.CachedPromptTokens != 0 || t1.GeneratedTokens != len(ids1) || s.Len() != 3 {
				t.Fatalf("turn 1 metrics %+v, %d messages", t1, s.Len())
			}
			// The first turn equals a fresh Chat.
			fresh1, _ := collect(m.Chat(bg, []mlx.Message{system, u1}, mlx.WithMaxTokens(12)))
			if !equalIDs(ids1, fresh1) {
				t.Fatalf("turn 1 %v, fresh chat %v", ids1, fresh1)
			}

			u2 := mlx.Message{Role: "user", Content: "Tell me more, in one sentence."}
			ids2, _ := collect(s.Send(bg, u2))
			t2 := s.Metrics()
			if s.Err() != nil || t2.CachedPromptTokens < t1.PromptTokens || t2.CachedPromptTokens >= t2.PromptTokens {
				t.Fatalf("turn 2 reuses %d of %d prompt tokens (turn 1's prompt: %d); Err %v",
					t2.CachedPromptTokens, t2.PromptTokens, t1.PromptTokens, s.Err())
			}
			if s.Len() != 5 {
				t.Fatalf("%d messages after two turns", s.Len())
			}
			var fr mlx.Result
			fresh2, _ := collect(m.Chat(bg, []mlx.Message{system, u1, {Role: "assistant", Content: text1}, u2},
				mlx.WithMaxTokens(12), mlx.WithResult(&fr)))
			if !equalIDs(ids2, fresh2) || fr.Metrics.CachedPromptTokens != 0 || fr.Metrics.PromptTokens != t2.PromptTokens {
				t.Fatalf("turn 2 %v, fresh chat %v (%+v)", ids2, fresh2, fr.Metrics)
			}
			// The model's own Err/Metrics describe its Chat calls, not the session's sends.
			if m.Metrics() != fr.Metrics {
				t.Fatal("model metrics are not its last Chat's")
			}

			if err := s.Reset(); err != nil || s.Len() != 0 {
				t.Fatalf("Reset: %v, %d messages", err, s.Len())
			}
			collect(s.Send(bg, u1))
			if s.Metrics().CachedPromptTokens != 0 || s.Len() != 2 {
				t.Fatalf("after Reset: %+v, %d messages", s.Metrics(), s.Len())
			}
		})
	}
}

func TestSessionCancelAndErrors(t *testing.T) {
	m := load(t, "qwen3")
	s, err := m.NewSession(mlx.WithTemplateVars(map[string]any{"enable_thinking": false}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	n := 0
	for range s.Send(ctx, mlx.Message{Role: "user", Content: "Count to one hundred."}, mlx.WithMaxTokens(200)) {
		n++
		if n == 2 {
			cancel()
		}
	}
	if n != 2 || !errors.Is(s.Err(), context.Canceled) || m.Err() != nil {
		t.Fatalf("cancelled send: %d tokens, session Err %v, model Err %v", n, s.Err(), m.Err())
	}
	// A cancelled turn still joins the conversation with what it generated.
	if s.Len() != 2 {
		t.Fatalf("%d messages after a cancelled turn", s.Len())
	}
	// A failed send leaves the conversation unchanged.
	collect(s.Send(bg, mlx.Message{Role: "user", Content: "x"}, mlx.WithTemperature(-1)))
	wantStatus(t, s.Err(), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "temperature")
	if s.Len() != 2 {
		t.Fatalf("%d messages after a failed send", s.Len())
	}
	if err := s.Add(mlx.Message{Role: "user", Content: "a\x00b"}); !errors.Is(err, mlx.ErrInvalidArgument) {
		t.Fatalf("Add with NUL: %v", err)
	}
	if _, err := m.NewSession(mlx.WithTemplateVars(map[string]any{"x": make(chan int)})); !errors.Is(err, mlx.ErrInvalidArgument) {
		t.Fatalf("NewSession with bad template variables: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if ids, _ := collect(s.Send(bg, mlx.Message{Role: "user", Content: "hi"})); len(ids) != 0 || !errors.Is(s.Err(), mlx.ErrClosed) {
		t.Fatalf("Send after Close: %v, %v", ids, s.Err())
	}
	// Sessions on one model used from several goroutines.
	done := make(chan error)
	for g := 0; g < 3; g++ {
		go func() {
			s, err := m.NewSession(mlx.WithMaxTokens(6))
			if err != nil {
				done <- err
				return
			}
			defer s.Close()
			for turn := 0; turn < 2; turn++ {
				collect(s.Send(bg, mlx.Message{Role: "user", Content: "Hi!"}))
				if s.Err() != nil {
					done <- s.Err()
					return
				}
			}
			if s.Metrics().CachedPromptTokens == 0 {
				done <- errors.New("second turn cached nothing")
				return
			}
			done <- nil
		}()
	}
	for g := 0; g < 3; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
