package mlx_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	mlx "mlxrun/bindings/go"
)

// The tests run on the repository's fixture models (random weights, real tokenizers and
// chat templates) made by scripts/setup.sh, and compare with the Rust engine through the
// mlxrun command-line program (scripts/test_go.sh builds it and sets MLXRUN_CLI).

const prompt = "The capital of France is"

// repoPath is a path relative to the repository root (two folders up).
func repoPath(rel string) string {
	abs, err := filepath.Abs(filepath.Join("..", "..", rel))
	if err != nil {
		panic(err)
	}
	return abs
}

// fixture is the folder of a fixture model ($MLXRUN_FIXTURES/name, else .deps/fixtures/name).
func fixture(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("MLXRUN_FIXTURES")
	if dir == "" {
		dir = repoPath(".deps/fixtures")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(filepath.Join(p, "config.json")); err != nil {
		t.Fatalf("fixture %s is missing (%v): run scripts/setup.sh or scripts/test_go.sh", p, err)
	}
	return p
}

func load(t testing.TB, name string, opts ...mlx.LoadOption) *mlx.Model {
	t.Helper()
	m, err := mlx.LoadModel(fixture(t, name), opts...)
	if err != nil {
		t.Fatalf("LoadModel(%s): %v", name, err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// rustRef is what the Rust engine (mlxrun generate --json) produced.
type rustRef struct {
	Text         string  `json:"text"`
	PromptTokens []int32 `json:"prompt_tokens"`
	Tokens       []int32 `json:"tokens"`
	FinishReason string  `json:"finish_reason"`
}

var (
	refMu    sync.Mutex
	refCache = map[string]*rustRef{}
)

// cli is the mlxrun program: $MLXRUN_CLI, else the newest of target/{debug,release}/mlxrun.
func cli(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MLXRUN_CLI"); p != "" {
		return p
	}
	var found []string
	for _, p := range []string{repoPath("target/debug/mlxrun"), repoPath("target/release/mlxrun")} {
		if _, err := os.Stat(p); err == nil {
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		t.Fatal("no mlxrun program: set MLXRUN_CLI or run scripts/test_go.sh")
	}
	sort.Slice(found, func(i, j int) bool {
		a, _ := os.Stat(found[i])
		b, _ := os.Stat(found[j])
		return a.ModTime().After(b.ModTime())
	})
	return found[0]
}

// reference runs the Rust engine's greedy generation once per (fixture, prompt, n).
func reference(t testing.TB, name, text string, maxTokens int) *rustRef {
	t.Helper()
	key := name + "\x00" + text + "\x00" + strconv.Itoa(maxTokens)
	refMu.Lock()
	defer refMu.Unlock()
	if r, ok := refCache[key]; ok {
		return r
	}
	cmd := exec.Command(cli(t), "generate", "--model", fixture(t, name), "--prompt", text,
		"--max-tokens", strconv.Itoa(maxTokens), "--json")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	var r rustRef
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%s printed %q: %v", cmd, out, err)
	}
	refCache[key] = &r
	return &r
}

// collect ranges over seq and returns the token ids (text-only pieces left out) and text.
func collect(seq func(func(mlx.Token) bool)) (ids []int32, text string) {
	for tok := range seq {
		if tok.ID >= 0 {
			ids = append(ids, tok.ID)
		}
		text += tok.Text
	}
	return ids, text
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// copyFixture copies a fixture into a scratch folder that a test may damage.
func copyFixture(t testing.TB, name string) string {
	t.Helper()
	src := fixture(t, name)
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// wantStatus checks that err is an *mlx.Error of the status, matching its sentinel, and
// that its message mentions each needle.
func wantStatus(t testing.TB, err error, sentinel error, status mlx.Status, needles ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", status)
	}
	var e *mlx.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *mlx.Error", err, err)
	}
	if e.Status != status || !errors.Is(err, sentinel) {
		t.Fatalf("error %q has status %v, want %v", err, e.Status, status)
	}
	for _, n := range needles {
		if !contains(e.Message, n) {
			t.Fatalf("error message %q does not mention %q", e.Message, n)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

var bg = context.Background()
