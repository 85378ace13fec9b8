package mlx_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	mlx "mlxrun/bindings/go"
)

// Greedy generation through Go gives the Rust engine's tokens and text, on every family.
func TestGreedyMatchesRust(t *testing.T) {
	for _, name := range []string{"qwen3", "llama3", "gemma3"} {
		t.Run(name, func(t *testing.T) {
			m := load(t, name)
			for _, p := range []string{prompt, "Once upon a time, in a land far away — naïve café 日本語"} {
				ref := reference(t, name, p, 24)
				ids, text := collect(m.Generate(bg, p, mlx.WithMaxTokens(24)))
				if err := m.Err(); err != nil {
					t.Fatalf("Err: %v", err)
				}
				if !equalIDs(ids, ref.Tokens) {
					t.Fatalf("prompt %q: Go ids %v, Rust ids %v", p, ids, ref.Tokens)
				}
				if text != ref.Text {
					t.Fatalf("prompt %q: Go text %q, Rust text %q", p, text, ref.Text)
				}
				got, err := m.Tokenize(p, true)
				if err != nil || !equalIDs(got, ref.PromptTokens) {
					t.Fatalf("Tokenize(%q) = %v, %v; Rust prompt ids %v", p, got, err, ref.PromptTokens)
				}
				met := m.Metrics()
				if met.PromptTokens != len(ref.PromptTokens) || met.GeneratedTokens != len(ref.Tokens) || met.CachedPromptTokens != 0 {
					t.Fatalf("metrics %+v; want %d prompt and %d generated tokens", met, len(ref.PromptTokens), len(ref.Tokens))
				}
			}
		})
	}
}

func TestInfoAndMetrics(t *testing.T) {
	m := load(t, "qwen3", mlx.WithDevice("cpu"), mlx.WithContextLength(4096))
	info := m.Info()
	if m.ModelType() != "qwen3" || info.Architecture != "qwen3" {
		t.Fatalf("ModelType %q, info %+v", m.ModelType(), info)
	}
	if info.VocabSize < 1000 || info.NumLayers <= 0 || info.HiddenSize <= 0 || info.NumHeads <= 0 ||
		info.NumKVHeads <= 0 || info.HeadDim <= 0 || info.DType != mlx.Float32 || info.ContextLength != 4096 ||
		info.MaxPositionEmbeddings <= 4096 {
		t.Fatalf("info %+v", info)
	}
	if (m.Metrics() != mlx.GenerateMetrics{}) || m.Err() != nil {
		t.Fatalf("before any call: metrics %+v, err %v", m.Metrics(), m.Err())
	}
	ref := reference(t, "qwen3", prompt, 24)
	var r mlx.Result
	ids, _ := collect(m.Generate(bg, prompt, mlx.WithMaxTokens(24), mlx.WithResult(&r)))
	met := m.Metrics()
	if met != r.Metrics || r.Err != nil {
		t.Fatalf("Result %+v, Metrics %+v", r, met)
	}
	if !equalIDs(ids, ref.Tokens) || met.GeneratedTokens != len(ids) || met.PromptTokens != len(ref.PromptTokens) {
		t.Fatalf("ids %v (Rust %v), metrics %+v", ids, ref.Tokens, met)
	}
	if met.PrefillDuration <= 0 || met.DecodeDuration <= 0 || met.TotalDuration != met.PrefillDuration+met.DecodeDuration ||
		met.PrefillTokensPerSec <= 0 || met.DecodeTokensPerSec <= 0 || met.PeakMemoryBytes == 0 || met.ActiveMemoryBytes == 0 {
		t.Fatalf("metrics %+v", met)
	}
	want := mlx.FinishLength
	if ref.FinishReason == "stop" {
		want = mlx.FinishStop
	}
	if r.FinishReason != want {
		t.Fatalf("finish reason %v, Rust said %s", r.FinishReason, ref.FinishReason)
	}
}

// Options reach the sampler: stop tokens, stop strings, seeds, log-probabilities.
func TestGenerateOptions(t *testing.T) {
	m := load(t, "qwen3")
	ref := reference(t, "qwen3", prompt, 24)

	stop := ref.Tokens[2]
	first := 0
	for ref.Tokens[first] != stop {
		first++
	}
	var r mlx.Result
	ids, _ := collect(m.Generate(bg, prompt, mlx.WithMaxTokens(24), mlx.WithStopTokens(stop), mlx.WithResult(&r)))
	if !equalIDs(ids, ref.Tokens[:first]) || r.FinishReason != mlx.FinishStop {
		t.Fatalf("stop token %d: got %v (%v), want %v", stop, ids, r.FinishReason, ref.Tokens[:first])
	}

	// A stop string: the text ends right before it.
	var sofar string
	for _, tok := range ref.Tokens {
		s, err := m.Detokenize([]int32{tok}, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) >= 2 && len(sofar) > 0 {
			_, text := collect(m.Generate(bg, prompt, mlx.WithMaxTokens(24), mlx.WithStopStrings(s), mlx.WithResult(&r)))
			if r.FinishReason != mlx.FinishStopString || contains(text, s) || !contains(ref.Text, text) {
				t.Fatalf("stop string %q: text %q, reason %v; full text %q", s, text, r.FinishReason, ref.Text)
			}
			break
		}
		sofar += s
	}

	seeded := func() ([]int32, []float32) {
		var lp []float32
		var ids []int32
		for tok := range m.Generate(bg, prompt, mlx.WithMaxTokens(16), mlx.WithTemperature(0.8), mlx.WithTopK(40),
			mlx.WithTopP(0.9), mlx.WithMinP(0.01), mlx.WithRepeatPenalty(1.1), mlx.WithSeed(42), mlx.WithLogits()) {
			if tok.ID >= 0 {
				ids = append(ids, tok.ID)
				lp = append(lp, tok.Logprob)
			}
		}
		if err := m.Err(); err != nil {
			t.Fatal(err)
		}
		return ids, lp
	}
	a, lpa := seeded()
	b, lpb := seeded()
	if len(a) == 0 || !equalIDs(a, b) {
		t.Fatalf("the same seed gave %v and %v", a, b)
	}
	for i := range lpa {
		if math.IsNaN(float64(lpa[i])) || lpa[i] > 0 || lpa[i] != lpb[i] {
			t.Fatalf("log-probabilities %v and %v", lpa, lpb)
		}
	}
	for tok := range m.Generate(bg, prompt, mlx.WithMaxTokens(4)) {
		if tok.Logprob != 0 {
			t.Fatalf("Logprob %v without WithLogits", tok.Logprob)
		}
	}

	// WithMaxTokens(0) generates nothing; the default is 256 (or an earlier stop).
	if ids, _ := collect(m.Generate(bg, prompt, mlx.WithMaxTokens(0))); len(ids) != 0 || m.Err() != nil {
		t.Fatalf("0 max tokens: %v, %v", ids, m.Err())
	}
	if ids, _ := collect(m.Generate(bg, prompt)); m.Err() != nil || len(ids) == 0 || len(ids) > 256 ||
		(len(ids) < 256 && m.Metrics().GeneratedTokens != len(ids)) {
		t.Fatalf("defaults: %d tokens, %v", len(ids), m.Err())
	}
}

// Err: nil after a normal end, the library's error (status and message) after a failed
// call, nil again after the next good one; the model stays usable.
func TestErrSemantics(t *testing.T) {
	m := load(t, "qwen3")
	ref := reference(t, "qwen3", prompt, 12)
	bad := []struct {
		name   string
		opts   []mlx.GenerateOption
		prompt string
		needle string
	}{
		{"negative temperature", []mlx.GenerateOption{mlx.WithTemperature(-1)}, prompt, "temperature"},
		{"top-p above 1", []mlx.GenerateOption{mlx.WithTopP(1.5)}, prompt, "top_p"},
		{"negative top-k", []mlx.GenerateOption{mlx.WithTopK(-3)}, prompt, "top-k"},
		{"negative max tokens", []mlx.GenerateOption{mlx.WithMaxTokens(-1)}, prompt, "max tokens"},
		{"empty stop string", []mlx.GenerateOption{mlx.WithStopStrings("")}, prompt, "stop_strings"},
		{"negative stop token", []mlx.GenerateOption{mlx.WithStopTokens(-7)}, prompt, "negative"},
		{"NUL in prompt", nil, "a\x00b", "NUL"},
		{"invalid UTF-8 prompt", nil, "\xff\xfe", "UTF-8"},
	}
	for _, c := range bad {
		var r mlx.Result
		n := 0
		for range m.Generate(bg, c.prompt, append(c.opts, mlx.WithResult(&r))...) {
			n++
		}
		if n != 0 {
			t.Fatalf("%s: %d tokens", c.name, n)
		}
		wantStatus(t, m.Err(), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, c.needle)
		if r.Err != m.Err() || r.FinishReason != mlx.FinishNone {
			t.Fatalf("%s: result %+v", c.name, r)
		}
		ids, _ := collect(m.Generate(bg, prompt, mlx.WithMaxTokens(12)))
		if m.Err() != nil || !equalIDs(ids, ref.Tokens) {
			t.Fatalf("after %s: %v, %v", c.name, ids, m.Err())
		}
	}
	// A prompt longer than the context length.
	small := load(t, "qwen3", mlx.WithContextLength(4))
	collect(small.Generate(bg, prompt))
	wantStatus(t, small.Err(), mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "context length")
	// The context length caps generation.
	small2 := load(t, "qwen3", mlx.WithContextLength(len(ref.PromptTokens)+3))
	if ids, _ := collect(small2.Generate(bg, prompt, mlx.WithMaxTokens(12))); small2.Err() != nil || len(ids) > 3 {
		t.Fatalf("context-capped generation: %v, %v", ids, small2.Err())
	}
}

// Cancelling the context stops decoding before the next token; Err is ctx.Err().
func TestContextCancel(t *testing.T) {
	m := load(t, "qwen3")
	long := func(extra ...mlx.GenerateOption) []mlx.GenerateOption {
		return append([]mlx.GenerateOption{mlx.WithMaxTokens(400)}, extra...)
	}

	t.Run("in the loop body", func(t *testing.T) {
		ctx, cancel := context.WithCancel(bg)
		defer cancel()
		var r mlx.Result
		n, after := 0, 0
		for range m.Generate(ctx, prompt, long(mlx.WithResult(&r))...) {
			n++
			if n == 3 {
				cancel()
			} else if n > 3 {
				after++
			}
		}
		if after != 0 || !errors.Is(m.Err(), context.Canceled) || r.FinishReason != mlx.FinishCancelled {
			t.Fatalf("%d tokens after cancel; Err %v; result %+v", after, m.Err(), r)
		}
		if r.Metrics.GeneratedTokens != 3 {
			t.Fatalf("the library generated %d tokens, 3 were delivered", r.Metrics.GeneratedTokens)
		}
	})

	t.Run("from another goroutine", func(t *testing.T) {
		// The cancel lands while the library is computing a token (not while the
		// callback waits for the loop body): mlxrun_cancel stops it.
		ctx, cancel := context.WithCancel(bg)
		defer cancel()
		var r mlx.Result
		n := 0
		start := time.Now()
		for range m.Generate(ctx, prompt, long(mlx.WithResult(&r), mlx.WithMaxTokens(100000))...) {
			n++
			if n == 1 {
				go func() { time.Sleep(5 * time.Millisecond); cancel() }()
			}
		}
		if r.FinishReason == mlx.FinishStop {
			t.Skipf("the model ended its text after %d tokens, before the cancel", n)
		}
		if !errors.Is(m.Err(), context.Canceled) || r.FinishReason != mlx.FinishCancelled || r.Metrics.GeneratedTokens > n+1 {
			t.Fatalf("%d tokens, Err %v, result %+v", n, m.Err(), r)
		}
		t.Logf("stopped after %d tokens, %v", n, time.Since(start))
	})

	t.Run("during prefill", func(t *testing.T) {
		// A prompt of two prefill chunks (2048 + 1953 tokens); no token callback runs
		// before the first token, so only mlxrun_cancel can stop it, and the library
		// checks for it between chunks. Cancels inside the first chunk, including while
		// the prompt is still being tokenized, return at the end of that chunk.
		long := strings.Repeat("hello world ", 2000)
		var full mlx.Result
		start := time.Now()
		collect(m.Generate(bg, long, mlx.WithMaxTokens(1), mlx.WithResult(&full)))
		whole := time.Since(start)
		if full.Err != nil || full.Metrics.PromptTokens < 4000 {
			t.Fatalf("long prompt: %+v", full)
		}
		for _, after := range []time.Duration{time.Millisecond, whole / 10} {
			ctx, cancel := context.WithCancel(bg)
			timer := time.AfterFunc(after, cancel)
			var r mlx.Result
			start := time.Now()
			ids, _ := collect(m.Generate(ctx, long, mlx.WithMaxTokens(50), mlx.WithResult(&r)))
			took := time.Since(start)
			timer.Stop()
			cancel()
			if len(ids) != 0 || !errors.Is(r.Err, context.Canceled) || r.FinishReason != mlx.FinishCancelled ||
				r.Metrics.GeneratedTokens != 0 {
				t.Fatalf("cancel after %v: %d tokens, %+v", after, len(ids), r)
			}
			// GeneratedTokens == 0 says the prefill was cut short (else its end would
			// have produced a token); the durations are only logged.
			t.Logf("cancel after %v: returned after %v (whole prefill %v)", after, took, whole)
		}
	})

	t.Run("deadline before the call", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(bg, -time.Second)
		defer cancel()
		before := m.Metrics()
		if ids, _ := collect(m.Generate(ctx, prompt)); len(ids) != 0 {
			t.Fatalf("%d tokens", len(ids))
		}
		if !errors.Is(m.Err(), context.DeadlineExceeded) || m.Metrics() != before {
			t.Fatalf("Err %v; metrics changed: %+v", m.Err(), m.Metrics())
		}
	})

	t.Run("while waiting for another generation", func(t *testing.T) {
		// One goroutine holds the model (its loop body waits); a second call whose
		// context ends while it waits returns without ever running.
		hold := make(chan struct{})
		started := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			for range m.Generate(bg, prompt, mlx.WithMaxTokens(3)) {
				if first {
					first = false
					close(started)
					<-hold
				}
			}
		}()
		<-started
		ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
		defer cancel()
		var r mlx.Result
		ids, _ := collect(m.Generate(ctx, prompt, mlx.WithResult(&r)))
		close(hold)
		wg.Wait()
		if len(ids) != 0 || !errors.Is(r.Err, context.DeadlineExceeded) || r.FinishReason != mlx.FinishNone {
			t.Fatalf("queued call: %v, %+v", ids, r)
		}
	})

	// After all that the model gives the reference again.
	ref := reference(t, "qwen3", prompt, 24)
	if ids, _ := collect(m.Generate(bg, prompt, mlx.WithMaxTokens(24))); !equalIDs(ids, ref.Tokens) || m.Err() != nil {
		t.Fatalf("after cancels: %v, %v", ids, m.Err())
	}
}

// Breaking out of the loop stops generation at once and leaves Err nil; so does a
// panic in the loop body (which reaches the caller), and the model stays usable.
func TestLoopBreakAndPanic(t *testing.T) {
	m := load(t, "qwen3")
	ref := reference(t, "qwen3", prompt, 24)
	var r mlx.Result
	var got []int32
	for tok := range m.Generate(bg, prompt, mlx.WithMaxTokens(24), mlx.WithResult(&r)) {
		got = append(got, tok.ID)
		if len(got) == 3 {
			break
		}
	}
	if m.Err() != nil || r.Err != nil || r.FinishReason != mlx.FinishCancelled || r.Metrics.GeneratedTokens != 3 ||
		!equalIDs(got, ref.Tokens[:3]) {
		t.Fatalf("break: ids %v, Err %v, result %+v", got, m.Err(), r)
	}

	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want the loop body's panic", p)
			}
		}()
		for range m.Generate(bg, prompt, mlx.WithMaxTokens(24)) {
			panic("boom")
		}
	}()

	// A goroutine whose loop body calls runtime.Goexit (as t.FailNow does).
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range m.Generate(bg, prompt, mlx.WithMaxTokens(24)) {
			runtimeGoexit()
		}
	}()
	<-done

	if ids, _ := collect(m.Generate(bg, prompt, mlx.WithMaxTokens(24))); !equalIDs(ids, ref.Tokens) || m.Err() != nil {
		t.Fatalf("after break, panic and Goexit: %v, %v", ids, m.Err())
	}
	// A sequence can be ranged again: each range is a new generation.
	seq := m.Generate(bg, prompt, mlx.WithMaxTokens(24))
	a, _ := collect(seq)
	b, _ := collect(seq)
	if !equalIDs(a, ref.Tokens) || !equalIDs(b, ref.Tokens) {
		t.Fatalf("ranging twice: %v, %v", a, b)
	}
}

// Goroutines sharing one model each get the reference output (calls run one at a time).
func TestConcurrentGenerate(t *testing.T) {
	m := load(t, "qwen3")
	prompts := []string{prompt, "Hello, my name is", "1, 2, 3, 4,"}
	refs := make([]*rustRef, len(prompts))
	for i, p := range prompts {
		refs[i] = reference(t, "qwen3", p, 16)
	}
	const goroutines, rounds = 6, 3
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*rounds)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				i := (g + r) % len(prompts)
				var res mlx.Result
				ids, text := collect(m.Generate(bg, prompts[i], mlx.WithMaxTokens(16), mlx.WithResult(&res)))
				switch {
				case res.Err != nil:
					errs <- res.Err
				case !equalIDs(ids, refs[i].Tokens) || text != refs[i].Text:
					errs <- fmt.Errorf("goroutine %d, prompt %q: %v, want %v", g, prompts[i], ids, refs[i].Tokens)
				case res.Metrics.GeneratedTokens != len(ids) || res.Metrics.PromptTokens != len(refs[i].PromptTokens):
					errs <- fmt.Errorf("goroutine %d: metrics %+v of another call", g, res.Metrics)
				}
				_ = m.Info()
				_ = m.Metrics()
				_ = m.Err()
				if _, err := m.Tokenize(prompts[i], true); err != nil {
					errs <- err
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
