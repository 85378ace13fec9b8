package mlx_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	mlx "mlxrun/bindings/go"
)

// concurrencyFixtures are the models the concurrency tests load side by side.
var concurrencyFixtures = []string{"qwen3", "gemma3", "llama3"}

var concurrencyPrompts = []string{prompt, "Once upon a time", "def fibonacci(n):"}

// withinDeadline fails the test if f has not returned after limit: a deadlock.
func withinDeadline(t *testing.T, limit time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("%s did not finish within %v: a deadlock", what, limit)
	}
}

// isPrefix reports whether got is a prefix of want.
func isPrefix(got, want []int32) bool {
	return len(got) <= len(want) && equalIDs(got, want[:len(got)])
}

// Goroutines generating and classifying on several models at once, some with contexts
// cancelled at staggered times, while another model is loaded and closed again and again
// and one model is closed under its callers: every completed generation equals the Rust
// engine's serial output, every cancelled one is a prefix of it, no call returns anything
// but its output, ctx.Err() or ErrClosed.
func TestConcurrentModelsCancelsAndClose(t *testing.T) {
	const maxTokens = 24
	refs := map[string]*rustRef{}
	for _, f := range concurrencyFixtures {
		for _, p := range concurrencyPrompts {
			refs[f+"\x00"+p] = reference(t, f, p, maxTokens)
		}
	}
	// Paths are looked up here: t.Fatal belongs to the test's goroutine.
	paths := make([]string, len(concurrencyFixtures))
	for i, f := range concurrencyFixtures {
		paths[i] = fixture(t, f)
	}
	cycled := fixture(t, "llama-linear")
	withinDeadline(t, 4*time.Minute, "the concurrent calls", func() {
		// Loaded concurrently; errors are reported from this goroutine (t.Fatal may
		// not be called from the loaders).
		models := make([]*mlx.Model, len(concurrencyFixtures))
		loadErrs := make([]error, len(concurrencyFixtures))
		var wg sync.WaitGroup
		for i := range concurrencyFixtures {
			wg.Add(1)
			go func(i int, path string) {
				defer wg.Done()
				models[i], loadErrs[i] = mlx.LoadModel(path)
			}(i, paths[i])
		}
		wg.Wait()
		for i, err := range loadErrs {
			if err != nil {
				t.Errorf("LoadModel(%s): %v", concurrencyFixtures[i], err)
				return
			}
			defer models[i].Close()
		}

		errs := make(chan error, 256)
		var cancelled, completed sync.Map
		for g := 0; g < 9; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for r := 0; r < 4; r++ {
					k := (g + r) % len(models)
					name, p := concurrencyFixtures[k], concurrencyPrompts[(g*5+r)%len(concurrencyPrompts)]
					want := refs[name+"\x00"+p]
					ctx, cancel := context.WithCancel(bg)
					if g%3 == 0 {
						// Cancelled after a few milliseconds: mid-prefill, mid-decode or
						// before the call gets the model.
						time.AfterFunc(time.Duration(2+(g+r)*5)*time.Millisecond, cancel)
					}
					if r == 3 {
						res, err := models[k].Classify(ctx, concurrencyPrompts)
						switch {
						case errors.Is(err, context.Canceled):
						case err != nil:
							errs <- fmt.Errorf("%s classify: %w", name, err)
						default:
							for i, c := range res {
								w := refs[name+"\x00"+concurrencyPrompts[i]].Tokens[0]
								if c.Err == nil && c.Token.ID != w {
									errs <- fmt.Errorf("%s classify %q: %d, want %d", name, concurrencyPrompts[i], c.Token.ID, w)
								} else if c.Err != nil && !errors.Is(c.Err, context.Canceled) {
									errs <- fmt.Errorf("%s classify %q: %w", name, concurrencyPrompts[i], c.Err)
								}
							}
						}
						cancel()
						continue
					}
					var res mlx.Result
					ids, _ := collect(models[k].Generate(ctx, p, mlx.WithMaxTokens(maxTokens), mlx.WithResult(&res)))
					cancel()
					switch {
					case errors.Is(res.Err, context.Canceled) && isPrefix(ids, want.Tokens):
						cancelled.Store(fmt.Sprint(g, r), true)
					case res.Err != nil:
						errs <- fmt.Errorf("goroutine %d, %s %q: %w", g, name, p, res.Err)
					case !equalIDs(ids, want.Tokens):
						errs <- fmt.Errorf("goroutine %d, %s %q: %v, want %v", g, name, p, ids, want.Tokens)
					default:
						completed.Store(fmt.Sprint(g, r), true)
					}
				}
			}(g)
		}
		// A model loaded and closed again and again beside them, closed while its own
		// generation runs.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				m, err := mlx.LoadModel(cycled)
				if err != nil {
					errs <- err
					return
				}
				done := make(chan struct{})
				go func() {
					defer close(done)
					var res mlx.Result
					collect(m.Generate(bg, prompt, mlx.WithMaxTokens(64), mlx.WithResult(&res)))
					if res.Err != nil && !errors.Is(res.Err, mlx.ErrClosed) {
						errs <- fmt.Errorf("generation on a closing model: %w", res.Err)
					}
				}()
				time.Sleep(time.Duration(i*15) * time.Millisecond)
				if err := m.Close(); err != nil {
					errs <- err
				}
				<-done
			}
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		n := func(m *sync.Map) (k int) { m.Range(func(_, _ any) bool { k++; return true }); return }
		t.Logf("27 generations: %d completed, %d cancelled (prefixes of the serial output)", n(&completed), n(&cancelled))
		if n(&completed) == 0 {
			t.Error("no generation completed")
		}
	})
}
