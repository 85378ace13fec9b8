// Package mlx runs LLMs on Apple's MLX from Go, through mlxrun's C library
// (include/mlxrun.h). It has the shape of go-inference's TextModel, which go-mlx
// implemented and go-ml, go-ai and go-i18n code against: LoadModel, then Generate or Chat
// streaming tokens as an iter.Seq, with Err, Metrics, Info and Close.
//
//	model, err := mlx.LoadModel("/models/Qwen3-0.6B")
//	if err != nil {
//		return err
//	}
//	defer model.Close()
//	for tok := range model.Generate(ctx, "The capital of France is", mlx.WithMaxTokens(32)) {
//		fmt.Print(tok.Text)
//	}
//	if err := model.Err(); err != nil {
//		return err
//	}
//
// # Building
//
// The package uses cgo and finds the library with pkg-config. Install the library, its
// header and mlxrun.pc under a prefix, and point pkg-config at it:
//
//	scripts/install.sh $HOME/.local            # from the mlxrun repository (release build)
//	export PKG_CONFIG_PATH=$HOME/.local/lib/pkgconfig
//	export CGO_ENABLED=1                       # the default where a C compiler is installed
//	go test ./...
//
// The linker flags in mlxrun.pc record an rpath to PREFIX/lib, and libmlxrun finds MLX
// (and OpenBLAS on Linux) in PREFIX/lib/mlxrun, so the programs built run without
// LD_LIBRARY_PATH; a moved prefix needs a rebuild (or LD_LIBRARY_PATH=PREFIX/lib).
// Without pkg-config, build with the tag mlxrun_no_pkgconfig and give the flags yourself:
//
//	CGO_CFLAGS="-I$PREFIX/include" \
//	CGO_LDFLAGS="-L$PREFIX/lib -lmlxrun -Wl,-rpath,$PREFIX/lib \
//	    -Wl,-rpath-link,$PREFIX/lib/mlxrun/mlx/lib:$PREFIX/lib/mlxrun/blas" \
//	go build -tags mlxrun_no_pkgconfig ./...
//
// (the -rpath-link lets the linker check libmlxrun's own dependencies; the flags are
// those of mlxrun.pc.)
//
// The module path is mlxrun/bindings/go (package name mlx). Use it from another module
// with a replace directive, or a go.work that includes this folder:
//
//	require mlxrun/bindings/go v0.0.0
//	replace mlxrun/bindings/go => /path/to/mlxrun/bindings/go
//
//	import mlx "mlxrun/bindings/go"
//
// In the mlxrun repository, scripts/test_go.sh installs a debug build under
// target/go-prefix and runs go vet and go test -race with that environment.
//
// # Streaming, cancellation and errors
//
// Generate, Chat and Session.Send return an iter.Seq[Token]: nothing runs until it is
// ranged over, and each range runs one generation. The library hands over each token
// and waits for the loop body to finish with it before it goes on, so:
//
//   - breaking out of the loop stops generation before the next token (Err stays nil);
//   - cancelling ctx stops it before the next token — also while the library is
//     computing, through mlxrun_cancel (a long prompt's prefill stops at the end of
//     its current 2048-token chunk), and while the call waits for its turn — and Err
//     returns ctx.Err();
//   - a normal end (end of sequence or turn, a stop token or string, MaxTokens) leaves
//     Err nil;
//   - a failure is an *Error carrying the library's status and message; errors.Is
//     matches it against ErrInvalidArgument, ErrConfig, ErrWeights, ErrTokenizer,
//     ErrTemplate, ErrMLX, ErrIO or ErrInternal. ErrClosed reports a closed model.
//
// A panic in the loop body reaches the caller as usual (the generation is stopped
// first) and the model stays usable. Model.Err describes the model's most recent
// Generate, Chat or Train call to end, Model.Metrics its most recent Generate or Chat;
// WithResult gives one call its own error, metrics and FinishReason, which is what
// goroutines sharing a model should use. Session.Err and Session.Metrics describe the
// session's own sends.
//
// # Training
//
// LoRA fine-tuning has go-inference's training shape: LoadTrainable, ApplyLoRA with a
// LoRAConfig (DefaultLoRAConfig: rank 8, alpha 16, q_proj and v_proj) returning an
// *Adapter (TotalParams, Save), Encode, Decode and NumLayers. Train streams
// iter.Seq[TrainProgress] reports (training and validation losses, learning rate,
// speeds, checkpoints, warnings) with mlx-lm's trainer, datasets and defaults, set by
// TrainOptions (WithIters, WithLearningRate, WithMaskPrompt, WithAdapterDir, ...); it
// stops and reports as Generate does: a break or a cancelled ctx stops it within a
// step, Err says why, and the adapter files written before stay whole. Evaluate gives a
// test loss, LoadAdapter, SaveAdapter and RemoveAdapter manage the adapter on a loaded
// model, WithAdapterPath loads one with the model, and Fuse writes a model with an
// adapter fused into its weights.
//
//	model, _ := mlx.LoadTrainable("/models/Qwen3-0.6B")
//	adapter, _ := model.ApplyLoRA(mlx.DefaultLoRAConfig())
//	for p := range model.Train(ctx, "data/", mlx.WithIters(600), mlx.WithAdapterDir("adapters")) {
//		if p.Kind == mlx.ProgressTrain {
//			fmt.Printf("step %d: loss %.3f\n", p.Step, p.TrainLoss)
//		}
//	}
//	if err := model.Err(); err != nil { ... }
//	fmt.Println(adapter.TotalParams(), "trainable parameters")
//
// # Concurrency
//
// A *Model (and a *Session) is safe for concurrent use. Calls are scheduled so:
//
//   - Generations (Generate, Chat, Session.Send, on the model or any of its sessions),
//     batches (Classify, BatchGenerate), Train and Evaluate run one at a time per model,
//     as the C library requires. A call waits for the model's generation slot when it
//     is ranged over (or called), in no guaranteed order; its context is honoured while
//     it waits. Different models run in parallel.
//   - Calls on one session run one at a time (a second Send waits for the first).
//   - Tokenize, Detokenize, Encode, Decode, Info, ModelType, NumLayers, Metrics and Err
//     never wait for a running generation or training. ApplyChatTemplate, NewSession,
//     ApplyLoRA, LoadAdapter, SaveAdapter, RemoveAdapter and Adapter.Save wait for it
//     (they need the model).
//   - Inside a range loop body, do not start another generation or training on the
//     same model, nor call the methods that wait for one: they would wait for the
//     running call, which waits for the loop body. Close and Session.Close may be
//     called there: they stop the running generation or training.
//   - MLX keeps its streams per OS thread, so all of a model's MLX work (its load,
//     generations, sessions, adapters, training and free) runs on one OS thread of its
//     own; the methods that never wait run where they are called.
//
// Close stops a running generation before its next token, refuses calls that have not
// started, waits for calls in flight to leave the C library, then frees the model and
// its sessions; memory is given back then, not by the garbage collector. Close is
// idempotent; after it every call returns ErrClosed instead of touching freed memory.
// Tokens reach Go through a runtime/cgo.Handle passed as the callback's user data; no Go
// pointer is kept by C.
//
// # Devices and dtypes
//
// WithDevice("cpu" or "gpu") picks MLX's device (by default the GPU when MLX has one).
// WithDType picks the compute dtype; by default float32 on the CPU, where MLX's kernels
// are fastest in f32, and the checkpoint's dtype on a GPU. The device setting is
// process-wide in MLX, as are the memory functions (SetCacheLimit, SetMemoryLimit,
// SetWiredLimit, GetActiveMemory, GetPeakMemory, GetCacheMemory, ResetPeakMemory,
// ClearCache).
package mlx
