package mlx_test

import (
	"context"
	"testing"
	"time"

	mlx "mlxrun/bindings/go"
)

var batchPrompts = []string{
	"Hello",
	"The capital of France is",
	"Once upon a time, in a land far away, there lived a small dragon.",
	"1 2 3",
}

func TestClassifyMatchesGenerate(t *testing.T) {
	m := load(t, "qwen3")
	res, err := m.Classify(context.Background(), batchPrompts, mlx.WithLogits(), mlx.WithBatchSize(3))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range batchPrompts {
		r := res[i]
		if r.Err != nil {
			t.Fatalf("prompt %d: %v", i, r.Err)
		}
		ids, _ := collect(m.Generate(context.Background(), p, mlx.WithMaxTokens(1)))
		if len(ids) != 1 || ids[0] != r.Token.ID {
			t.Fatalf("prompt %d: classify %d, generate %v", i, r.Token.ID, ids)
		}
		if len(r.Logits) != m.Info().VocabSize {
			t.Fatalf("prompt %d: %d logits", i, len(r.Logits))
		}
		best := 0
		for v, x := range r.Logits {
			if x > r.Logits[best] {
				best = v
			}
		}
		if int32(best) != r.Token.ID || r.Token.Logprob > 0 {
			t.Fatalf("prompt %d: argmax %d, token %d, logprob %f", i, best, r.Token.ID, r.Token.Logprob)
		}
	}
}

func TestClassifyPerPromptError(t *testing.T) {
	m := load(t, "qwen3", mlx.WithContextLength(16))
	long := ""
	for i := 0; i < 40; i++ {
		long += "word "
	}
	res, err := m.Classify(context.Background(), []string{"Hello", long})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[0].Logits != nil {
		t.Fatalf("prompt 0: %v", res[0].Err)
	}
	wantStatus(t, res[1].Err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, "context length is 16")
	if _, err := m.Classify(context.Background(), nil); err == nil {
		t.Fatal("no prompts accepted")
	}
}

func TestBatchGenerateMatchesGenerate(t *testing.T) {
	m := load(t, "llama3")
	opts := []mlx.GenerateOption{mlx.WithMaxTokens(8), mlx.WithBatchSize(2)}
	res, err := m.BatchGenerate(context.Background(), batchPrompts, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range batchPrompts {
		want, wantText := collect(m.Generate(context.Background(), p, mlx.WithMaxTokens(8)))
		r := res[i]
		if r.Err != nil {
			t.Fatalf("row %d: %v", i, r.Err)
		}
		var got []int32
		text := ""
		for _, tok := range r.Tokens {
			if tok.ID >= 0 {
				got = append(got, tok.ID)
			}
			text += tok.Text
		}
		if !equalIDs(got, want) || text != wantText {
			t.Fatalf("row %d: %v %q, alone %v %q", i, got, text, want, wantText)
		}
	}
}

func TestBatchGenerateContextCancel(t *testing.T) {
	m := load(t, "llama3")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.BatchGenerate(ctx, batchPrompts); err != context.Canceled {
		t.Fatalf("cancelled ctx: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, err := m.BatchGenerate(ctx, batchPrompts, mlx.WithMaxTokens(2000), mlx.WithBatchSize(2))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != context.DeadlineExceeded || len(r.Tokens) >= 2000 {
			t.Fatalf("row %d: err %v, %d tokens", i, r.Err, len(r.Tokens))
		}
	}
}
