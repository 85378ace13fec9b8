package mlx_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	mlx "mlxrun/bindings/go"
)

// safetensors is a parsed .safetensors file: float32 and int32 tensors by name, and the
// metadata.
type safetensors struct {
	meta    map[string]string
	tensors map[string][]byte
	shapes  map[string][]int
}

func readSafetensors(t *testing.T, path string) safetensors {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run scripts/setup.sh", err)
	}
	n := binary.LittleEndian.Uint64(raw[:8])
	var header map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &header); err != nil {
		t.Fatal(err)
	}
	data := raw[8+n:]
	st := safetensors{meta: map[string]string{}, tensors: map[string][]byte{}, shapes: map[string][]int{}}
	for name, v := range header {
		if name == "__metadata__" {
			if err := json.Unmarshal(v, &st.meta); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var e struct {
			Shape   []int    `json:"shape"`
			Offsets [2]int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(v, &e); err != nil {
			t.Fatal(err)
		}
		st.tensors[name] = data[e.Offsets[0]:e.Offsets[1]]
		st.shapes[name] = e.Shape
	}
	return st
}

func (s safetensors) f32(t *testing.T, name string) []float32 {
	b, ok := s.tensors[name]
	if !ok {
		t.Fatalf("no tensor %s", name)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// The snapshot of the qwen3 fixture equals mlx-lm's keys and queries, recorded by
// scripts/attention_refs.py, within float32 rounding (measured: exactly equal).
func TestInspectAttentionMatchesMLXLM(t *testing.T) {
	refs := readSafetensors(t, repoPath(".deps/refs/attention/qwen3.safetensors"))
	var cases []struct {
		ID     string `json:"id"`
		Prompt string `json:"prompt"`
		SeqLen int    `json:"seq_len"`
	}
	if err := json.Unmarshal([]byte(refs.meta["cases"]), &cases); err != nil || len(cases) == 0 {
		t.Fatalf("cases: %v", err)
	}
	m := load(t, "qwen3", mlx.WithDevice("cpu"))
	info := m.Info()
	for _, c := range cases {
		snap, err := m.InspectAttention(context.Background(), c.Prompt)
		if err != nil {
			t.Fatal(err)
		}
		if snap.NumLayers != info.NumLayers || snap.NumHeads != info.NumKVHeads || snap.NumQueryHeads != info.NumHeads ||
			snap.HeadDim != info.HeadDim || snap.SeqLen != c.SeqLen || snap.Architecture != "qwen3" || !snap.HasQueries() {
			t.Fatalf("%s: snapshot %d layers %d/%d heads %d positions of %d (%s)", c.ID, snap.NumLayers, snap.NumHeads,
				snap.NumQueryHeads, snap.SeqLen, snap.HeadDim, snap.Architecture)
		}
		per := snap.SeqLen * snap.HeadDim
		worst := 0.0
		for l := 0; l < snap.NumLayers; l++ {
			for which, got := range map[string][][]float32{"keys": snap.Keys[l], "queries": snap.Queries[l]} {
				want := refs.f32(t, c.ID+"/layer"+strconv.Itoa(l)+"/"+which)
				if len(want) != len(got)*per {
					t.Fatalf("%s layer %d %s: %d heads of %d values, reference has %d", c.ID, l, which, len(got), per, len(want))
				}
				for h, v := range got {
					for i, x := range v {
						worst = math.Max(worst, math.Abs(float64(x)-float64(want[h*per+i])))
					}
				}
			}
		}
		if worst > 1e-5 {
			t.Fatalf("%s: max |diff| %g > 1e-5", c.ID, worst)
		}
	}
}

func TestInspectAttentionErrors(t *testing.T) {
	m := load(t, "qwen3", mlx.WithDevice("cpu"))
	var e *mlx.Error
	if _, err := m.InspectAttention(context.Background(), ""); !errors.As(err, &e) || e.Status != mlx.StatusInvalidArgument {
		t.Fatalf("empty prompt: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.InspectAttention(ctx, prompt); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	_ = m.Close()
	if _, err := m.InspectAttention(context.Background(), prompt); !errors.Is(err, mlx.ErrClosed) {
		t.Fatalf("closed model: %v", err)
	}
}

func TestDeviceInfo(t *testing.T) {
	_ = load(t, "qwen3", mlx.WithDevice("cpu")) // makes the CPU MLX's default device
	d, err := mlx.DeviceInfo()
	if err != nil {
		t.Fatal(err)
	}
	if d.GPU || d.Kind != mlx.DeviceKindCPU || d.Name == "" || d.MemorySize == 0 || d.MemoryLimitBytes == 0 || d.CacheLimitBytes == 0 {
		t.Fatalf("device %+v", d)
	}
	if runtime.GOOS == "linux" {
		cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
		meminfo, _ := os.ReadFile("/proc/meminfo")
		if !strings.Contains(string(cpuinfo), "model name\t: "+d.Name+"\n") {
			t.Fatalf("name %q is not /proc/cpuinfo's model name", d.Name)
		}
		var kib uint64
		for _, line := range strings.Split(string(meminfo), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				for _, c := range f[1] {
					kib = kib*10 + uint64(c-'0')
				}
			}
		}
		if d.MemorySize != kib*1024 {
			t.Fatalf("memory %d, MemTotal %d kB", d.MemorySize, kib)
		}
	}
	prev := mlx.SetCacheLimit(55 << 20)
	defer mlx.SetCacheLimit(prev)
	if d2, err := mlx.DeviceInfo(); err != nil || d2.CacheLimitBytes != 55<<20 || prev != d.CacheLimitBytes {
		t.Fatalf("cache limit %d (set 55 MiB, previous %d, reported before %d): %v", d2.CacheLimitBytes, prev, d.CacheLimitBytes, err)
	}
	// On the CPU no GPU utilisation is sampled, and the metrics say so.
	m := load(t, "qwen3", mlx.WithDevice("cpu"))
	for range m.Generate(context.Background(), prompt, mlx.WithMaxTokens(2)) {
	}
	if met := m.Metrics(); met.GeneratedTokens == 0 || met.GPUUtilizationAvailable || met.GPUUtilizationMean != 0 || met.GPUUtilizationMax != 0 {
		t.Fatalf("metrics %+v", met)
	}
}
