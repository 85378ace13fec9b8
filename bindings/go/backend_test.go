package mlx_test

import (
	"context"
	"errors"
	"testing"

	mlx "mlxrun/bindings/go"
)

// venv is the project's virtualenv, which has mlx-lm (scripts/setup.sh makes it).
func venv() mlx.LoadOption { return mlx.WithVenv(repoPath(".deps/venv")) }

func TestBackendsAreRegisteredAndReportTheirAvailability(t *testing.T) {
	names := mlx.List()
	if len(names) < 2 || names[0] != "native" || names[1] != "mlx_lm" {
		t.Fatalf("List() = %v", names)
	}
	for _, st := range mlx.Backends(venv()) {
		if !st.Available || st.Version == "" {
			t.Errorf("%s: %+v", st.Name, st)
		}
	}
	missing := mlx.Backends(mlx.WithPython("/nonexistent/python3"))
	if missing[1].Available || !contains(missing[1].Reason, "/nonexistent/python3") {
		t.Errorf("mlx_lm with a missing Python: %+v", missing[1])
	}
	if b, err := mlx.Default(); err != nil || b.Name() != "native" {
		t.Errorf("Default() = %v, %v", b, err)
	}
	_, err := mlx.LoadTextModel(fixture(t, "qwen3"), mlx.WithBackend("tensorrt"))
	wantStatus(t, err, mlx.ErrInvalidArgument, mlx.StatusInvalidArgument, `unknown backend "tensorrt"`, "native, mlx_lm")
}

func TestTheMLXLMBackendGivesNativeTokens(t *testing.T) {
	ctx := context.Background()
	native := load(t, "qwen3")
	remote, err := mlx.LoadTextModel(fixture(t, "qwen3"), mlx.WithBackend("mlx_lm"), venv())
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	if got := remote.(*mlx.Model).Backend(); got != "mlx_lm" {
		t.Errorf("Backend() = %q", got)
	}
	if remote.ModelType() != native.ModelType() || remote.Info().NumLayers != native.Info().NumLayers {
		t.Errorf("info: %+v vs %+v", remote.Info(), native.Info())
	}
	for _, prompt := range []string{"The capital of France is", "Once upon a time"} {
		wantIDs, wantText := collect(native.Generate(ctx, prompt, mlx.WithMaxTokens(10)))
		ids, text := collect(remote.Generate(ctx, prompt, mlx.WithMaxTokens(10)))
		if !equalIDs(ids, wantIDs) || text != wantText {
			t.Errorf("%q: mlx_lm %v %q, native %v %q", prompt, ids, text, wantIDs, wantText)
		}
	}
	msgs := []mlx.Message{{Role: "user", Content: "Name a colour."}}
	wantIDs, _ := collect(native.Chat(ctx, msgs, mlx.WithMaxTokens(8)))
	ids, _ := collect(remote.Chat(ctx, msgs, mlx.WithMaxTokens(8)))
	if !equalIDs(ids, wantIDs) {
		t.Errorf("chat: mlx_lm %v, native %v", ids, wantIDs)
	}
	prompts := []string{"I love this film", "Terrible service"}
	want, err := native.Classify(ctx, prompts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Classify(ctx, prompts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range prompts {
		if got[i].Token.ID != want[i].Token.ID {
			t.Errorf("classify %d: mlx_lm %d, native %d", i, got[i].Token.ID, want[i].Token.ID)
		}
	}
	// What only the native backend does says so.
	_, err = remote.(*mlx.Model).ApplyLoRA(mlx.LoRAConfig{Rank: 8, Alpha: 16})
	if !errors.Is(err, mlx.ErrUnsupported) || !contains(err.Error(), "mlx_lm backend does not do LoRA training") {
		t.Errorf("ApplyLoRA on mlx_lm: %v", err)
	}
}

type fakeBackend struct{}

func (fakeBackend) Name() string    { return "fake" }
func (fakeBackend) Available() bool { return true }
func (fakeBackend) LoadModel(path string, opts ...mlx.LoadOption) (mlx.TextModel, error) {
	return nil, errors.New("fake backend: " + path)
}

func TestRegisterAddsABackendThatLoadTextModelUses(t *testing.T) {
	mlx.Register(fakeBackend{})
	if b, ok := mlx.Get("fake"); !ok || b.Name() != "fake" {
		t.Fatalf("Get(fake) = %v, %v", b, ok)
	}
	if names := mlx.List(); names[len(names)-1] != "fake" {
		t.Errorf("List() = %v", names)
	}
	_, err := mlx.LoadTextModel("/some/model", mlx.WithBackend("fake"))
	if err == nil || err.Error() != "fake backend: /some/model" {
		t.Errorf("LoadTextModel(fake) = %v", err)
	}
}

func TestDiscoverJudgesTheMLXLMBackendWithTheChosenPython(t *testing.T) {
	models, err := mlx.DiscoverAll(fixture(t, "qwen3"), mlx.WithMaxDepth(0), mlx.WithDiscoverVenv(repoPath(".deps/venv")))
	if err != nil || len(models) != 1 {
		t.Fatalf("DiscoverAll: %v, %d models", err, len(models))
	}
	if !models[0].CanLoad("native") || !models[0].CanLoad("mlx_lm") {
		t.Errorf("backends: %+v", models[0].Backends)
	}
}
