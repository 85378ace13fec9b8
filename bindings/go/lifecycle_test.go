package mlx_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mlx "mlxrun/bindings/go"
)

// Every kind of load failure is an *mlx.Error with the library's status and message.
func TestLoadErrors(t *testing.T) {
	t.Run("bad path", func(t *testing.T) {
		_, err := mlx.LoadModel("/nonexistent/model")
		wantStatus(t, err, mlx.ErrConfig, mlx.StatusConfig, "/nonexistent/model")
	})
	t.Run("empty path", func(t *testing.T) {
		_, err := mlx.LoadModel("")
		if err == nil {
			t.Fatal("loaded an empty path")
		}
	})
	t.Run("NUL in path", func(t *testing.T) {
		_, err := mlx.LoadModel(fixture(t, "qwen3") + "\x00junk")
		wantStatus(t, err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "NUL")
	})
	t.Run("corrupted weights", func(t *testing.T) {
		dir := copyFixture(t, "qwen3")
		w := filepath.Join(dir, "model.safetensors")
		st, err := os.Stat(w)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(w, st.Size()*2/3); err != nil {
			t.Fatal(err)
		}
		_, err = mlx.LoadModel(dir)
		wantStatus(t, err, mlx.ErrWeights, mlx.StatusWeights, "truncated")
	})
	t.Run("missing weights", func(t *testing.T) {
		dir := copyFixture(t, "qwen3")
		if err := os.Remove(filepath.Join(dir, "model.safetensors")); err != nil {
			t.Fatal(err)
		}
		_, err := mlx.LoadModel(dir)
		if !errors.Is(err, mlx.ErrWeights) && !errors.Is(err, mlx.ErrIO) {
			t.Fatalf("missing weights: %v", err)
		}
	})
	t.Run("unsupported model_type", func(t *testing.T) {
		dir := copyFixture(t, "qwen3")
		cfg := filepath.Join(dir, "config.json")
		b, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(b), `"model_type": "qwen3"`, `"model_type": "mamba9"`, 1)
		if edited == string(b) {
			t.Fatal("config.json has no model_type to edit")
		}
		if err := os.WriteFile(cfg, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = mlx.LoadModel(dir)
		wantStatus(t, err, mlx.ErrConfig, mlx.StatusConfig, "mamba9")
	})
	t.Run("malformed config", func(t *testing.T) {
		dir := copyFixture(t, "qwen3")
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{ "model_type": `), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := mlx.LoadModel(dir)
		// The tokenizer is loaded first and reads config.json too, so the library may
		// report this as a tokenizer error; either way the message names the file.
		if errors.Is(err, mlx.ErrTokenizer) {
			wantStatus(t, err, mlx.ErrTokenizer, mlx.StatusTokenizer, "config.json")
		} else {
			wantStatus(t, err, mlx.ErrConfig, mlx.StatusConfig, "config.json")
		}
	})
	t.Run("missing tokenizer", func(t *testing.T) {
		dir := copyFixture(t, "qwen3")
		if err := os.Remove(filepath.Join(dir, "tokenizer.json")); err != nil {
			t.Fatal(err)
		}
		_, err := mlx.LoadModel(dir)
		wantStatus(t, err, mlx.ErrTokenizer, mlx.StatusTokenizer, "tokenizer")
	})
	t.Run("bad dtype option", func(t *testing.T) {
		_, err := mlx.LoadModel(fixture(t, "qwen3"), mlx.WithDType(mlx.DType(77)))
		wantStatus(t, err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "dtype", "77")
	})
	t.Run("bad device option", func(t *testing.T) {
		_, err := mlx.LoadModel(fixture(t, "qwen3"), mlx.WithDevice("tpu"))
		wantStatus(t, err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "tpu")
	})
	t.Run("bad context length", func(t *testing.T) {
		_, err := mlx.LoadModel(fixture(t, "qwen3"), mlx.WithContextLength(-1))
		wantStatus(t, err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "context length")
	})
	t.Run("unknown distributed backend", func(t *testing.T) {
		_, err := mlx.LoadModel(fixture(t, "qwen3"), mlx.WithDistributed("carrier-pigeon", 0))
		wantStatus(t, err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "carrier-pigeon")
	})
	t.Run("ring without its environment", func(t *testing.T) {
		t.Setenv("MLX_RANK", "")
		t.Setenv("MLX_HOSTFILE", "")
		_, err := mlx.LoadModel(fixture(t, "qwen3"), mlx.WithDistributed("ring", time.Second))
		wantStatus(t, err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "MLX_RANK")
	})
	t.Run("good options", func(t *testing.T) {
		m := load(t, "qwen3", mlx.WithDType(mlx.BFloat16), mlx.WithDevice("cpu"), mlx.WithContextLen(512))
		if r, n := m.Rank(); r != 0 || n != 1 {
			t.Fatalf("a model loaded whole has rank %d of %d", r, n)
		}
		if m.Info().DType != mlx.BFloat16 || m.Info().ContextLength != 512 {
			t.Fatalf("info %+v", m.Info())
		}
		if ids, _ := collect(m.Generate(bg, prompt, mlx.WithMaxTokens(4))); len(ids) == 0 || m.Err() != nil {
			t.Fatalf("bf16 generation: %v, %v", ids, m.Err())
		}
	})
}

func TestErrorValues(t *testing.T) {
	e := &mlx.Error{Status: mlx.StatusWeights, Message: "model.safetensors is truncated"}
	if e.Error() != "mlx: weights error: model.safetensors is truncated" {
		t.Fatalf("Error() = %q", e.Error())
	}
	if !errors.Is(e, mlx.ErrWeights) || errors.Is(e, mlx.ErrConfig) || errors.Is(mlx.ErrClosed, mlx.ErrWeights) {
		t.Fatal("errors.Is matches the wrong sentinel")
	}
	if mlx.Version() == "" || mlx.Float16.String() != "float16" || mlx.StatusTemplate.String() != "chat template error" {
		t.Fatalf("version %q, names %v %v", mlx.Version(), mlx.Float16, mlx.StatusTemplate)
	}
}

// Close is idempotent; every call after it returns ErrClosed and nothing crashes.
func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	m := load(t, "qwen3")
	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	info := m.Info()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	var r mlx.Result
	if ids, _ := collect(m.Generate(bg, prompt, mlx.WithResult(&r))); len(ids) != 0 || !errors.Is(m.Err(), mlx.ErrClosed) || r.Err != mlx.ErrClosed {
		t.Fatalf("Generate after Close: %v, %v", ids, m.Err())
	}
	if ids, _ := collect(m.Chat(bg, []mlx.Message{{Role: "user", Content: "hi"}})); len(ids) != 0 || !errors.Is(m.Err(), mlx.ErrClosed) {
		t.Fatalf("Chat after Close: %v, %v", ids, m.Err())
	}
	if _, err := m.NewSession(); !errors.Is(err, mlx.ErrClosed) {
		t.Fatalf("NewSession after Close: %v", err)
	}
	if _, err := m.Tokenize("x", true); !errors.Is(err, mlx.ErrClosed) {
		t.Fatalf("Tokenize after Close: %v", err)
	}
	if _, err := m.Detokenize([]int32{1}, true); !errors.Is(err, mlx.ErrClosed) {
		t.Fatalf("Detokenize after Close: %v", err)
	}
	if _, err := m.ApplyChatTemplate([]mlx.Message{{Role: "user", Content: "hi"}}); !errors.Is(err, mlx.ErrClosed) {
		t.Fatalf("ApplyChatTemplate after Close: %v", err)
	}
	if m.Info() != info || m.ModelType() != "qwen3" {
		t.Fatal("Info changed after Close")
	}
	// The model's sessions were closed with it.
	expectSessionClosed(t, s, "after the model's Close")
	if s.Len() != 0 || s.Close() != nil || s.Close() != nil {
		t.Fatal("Len or Close on a closed session")
	}
}

// Close while generations run and wait: the running one stops before its next token,
// waiting ones are refused, Close returns once C is done, and nothing is used after free.
// expectSessionClosed checks that a closed session's Send, Add and Reset return ErrClosed
// (Send as an empty sequence with Err() = ErrClosed); when says how it was closed.
func expectSessionClosed(t *testing.T, s *mlx.Session, when string) {
	t.Helper()
	if ids, _ := collect(s.Send(bg, mlx.Message{Role: "user", Content: "hi"})); len(ids) != 0 || !errors.Is(s.Err(), mlx.ErrClosed) {
		t.Fatalf("Send %s: %v, %v", when, ids, s.Err())
	}
	if err := s.Add(mlx.Message{Role: "user", Content: "hi"}); !errors.Is(err, mlx.ErrClosed) {
		t.Fatalf("Add %s: %v", when, err)
	}
	if err := s.Reset(); !errors.Is(err, mlx.ErrClosed) {
		t.Fatalf("Reset %s: %v", when, err)
	}
}

func TestCloseWhileGenerating(t *testing.T) {
	for round := 0; round < 3; round++ {
		m, err := mlx.LoadModel(fixture(t, "qwen3"))
		if err != nil {
			t.Fatal(err)
		}
		first := make(chan struct{})
		var once sync.Once
		var wg sync.WaitGroup
		results := make([]mlx.Result, 4)
		for g := range results {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for range m.Generate(bg, prompt, mlx.WithMaxTokens(100000), mlx.WithResult(&results[g])) {
					once.Do(func() { close(first) })
				}
			}(g)
		}
		<-first
		start := time.Now()
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		closeTook := time.Since(start)
		wg.Wait()
		for g, r := range results {
			if r.Err != mlx.ErrClosed && !(r.Err == nil && r.FinishReason == mlx.FinishStop) {
				t.Fatalf("round %d goroutine %d: %+v", round, g, r)
			}
			if r.Metrics.GeneratedTokens >= 100000 {
				t.Fatalf("goroutine %d ran to the end: %+v", g, r)
			}
		}
		if closeTook > 10*time.Second {
			t.Fatalf("Close took %v", closeTook)
		}
	}
}

// Close (model or session) from inside the loop body stops the generation instead of
// waiting for it.
func TestCloseFromLoopBody(t *testing.T) {
	m, err := mlx.LoadModel(fixture(t, "qwen3"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range m.Generate(bg, prompt, mlx.WithMaxTokens(50)) {
		n++
		if n == 2 {
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n != 2 || !errors.Is(m.Err(), mlx.ErrClosed) {
		t.Fatalf("%d tokens, Err %v", n, m.Err())
	}

	m2 := load(t, "qwen3")
	s, err := m2.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	n = 0
	for range s.Send(bg, mlx.Message{Role: "user", Content: "Tell me a story."}, mlx.WithMaxTokens(50)) {
		n++
		if n == 2 {
			_ = s.Close()
		}
	}
	if n != 2 || !errors.Is(s.Err(), mlx.ErrClosed) {
		t.Fatalf("session: %d tokens, Err %v", n, s.Err())
	}
	// The model goes on.
	if ids, _ := collect(m2.Generate(bg, prompt, mlx.WithMaxTokens(4))); len(ids) == 0 || m2.Err() != nil {
		t.Fatalf("after a session's Close: %v, %v", ids, m2.Err())
	}
}

// Close racing with every kind of call, many times (run under -race).
func TestCloseRaces(t *testing.T) {
	for round := 0; round < 5; round++ {
		m, err := mlx.LoadModel(fixture(t, "qwen3"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		ctx, cancel := context.WithCancel(bg)
		run := func(f func()) {
			wg.Add(1)
			go func() { defer wg.Done(); f() }()
		}
		check := func(err error) {
			if err != nil && !errors.Is(err, mlx.ErrClosed) && !errors.Is(err, context.Canceled) {
				t.Errorf("round %d: %v", round, err)
			}
		}
		run(func() {
			var r mlx.Result
			collect(m.Generate(ctx, prompt, mlx.WithMaxTokens(30), mlx.WithResult(&r)))
			check(r.Err)
		})
		run(func() {
			var r mlx.Result
			collect(m.Chat(bg, []mlx.Message{{Role: "user", Content: "hi"}}, mlx.WithMaxTokens(30), mlx.WithResult(&r)))
			check(r.Err)
		})
		run(func() {
			var r mlx.Result
			collect(s.Send(bg, mlx.Message{Role: "user", Content: "hi"}, mlx.WithMaxTokens(30), mlx.WithResult(&r)))
			check(r.Err)
		})
		run(func() { check(s.Add(mlx.Message{Role: "system", Content: "be brief"})) })
		run(func() { _, err := m.Tokenize(prompt, true); check(err) })
		run(func() { _, err := m.ApplyChatTemplate([]mlx.Message{{Role: "user", Content: "hi"}}); check(err) })
		run(func() {
			if s2, err := m.NewSession(); err == nil {
				_ = s2.Close()
			} else {
				check(err)
			}
		})
		run(func() { _ = s.Close() })
		run(func() { time.Sleep(time.Duration(round) * 3 * time.Millisecond); _ = m.Close() })
		run(func() { time.Sleep(time.Duration(round) * 2 * time.Millisecond); cancel() })
		run(func() { time.Sleep(time.Duration(round) * 4 * time.Millisecond); _ = m.Close() })
		wg.Wait()
		cancel()
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMemoryFunctions(t *testing.T) {
	m := load(t, "qwen3")
	if mlx.GetActiveMemory() == 0 {
		t.Fatal("no active memory with a model loaded")
	}
	prev := mlx.SetCacheLimit(1 << 20)
	if got := mlx.SetCacheLimit(prev); got != 1<<20 {
		t.Fatalf("cache limit round trip: %d", got)
	}
	prevMem := mlx.SetMemoryLimit(8 << 30)
	if got := mlx.SetMemoryLimit(prevMem); got != 8<<30 {
		t.Fatalf("memory limit round trip: %d", got)
	}
	prevWired := mlx.SetWiredLimit(0)
	mlx.SetWiredLimit(prevWired)

	collect(m.Generate(bg, prompt, mlx.WithMaxTokens(8)))
	if mlx.GetPeakMemory() < mlx.GetActiveMemory() || m.Metrics().PeakMemoryBytes == 0 {
		t.Fatalf("peak %d < active %d", mlx.GetPeakMemory(), mlx.GetActiveMemory())
	}
	mlx.ResetPeakMemory()
	if mlx.GetPeakMemory() > mlx.GetActiveMemory()+1<<20 {
		t.Fatalf("peak %d after reset, active %d", mlx.GetPeakMemory(), mlx.GetActiveMemory())
	}
	mlx.ClearCache()
	if mlx.GetCacheMemory() != 0 {
		t.Fatalf("cache %d after ClearCache", mlx.GetCacheMemory())
	}

	// Closing a model gives its memory back.
	before := mlx.GetActiveMemory()
	m2, err := mlx.LoadModel(fixture(t, "llama3"))
	if err != nil {
		t.Fatal(err)
	}
	loaded := mlx.GetActiveMemory()
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	after := mlx.GetActiveMemory()
	if loaded <= before || after >= loaded || after > before+1<<20 {
		t.Fatalf("active memory: %d before load, %d loaded, %d after Close", before, loaded, after)
	}
}
