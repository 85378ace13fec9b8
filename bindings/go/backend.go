package mlx

/*
#include "bridge.h"
*/
import "C"

import (
	"context"
	"errors"
	"iter"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// TextModel is what every backend loads: go-inference's text model shape, which *Model
// implements for both of the library's backends.
type TextModel interface {
	Generate(ctx context.Context, prompt string, opts ...GenerateOption) iter.Seq[Token]
	Chat(ctx context.Context, messages []Message, opts ...GenerateOption) iter.Seq[Token]
	Classify(ctx context.Context, prompts []string, opts ...GenerateOption) ([]ClassifyResult, error)
	BatchGenerate(ctx context.Context, prompts []string, opts ...GenerateOption) ([]BatchResult, error)
	ModelType() string
	Info() ModelInfo
	Metrics() GenerateMetrics
	Err() error
	Close() error
}

// Backend is an engine that loads models, in go-inference's shape. The library's own,
// "native" and "mlx_lm", are registered when the package initialises; Register adds
// others.
type Backend interface {
	Name() string
	LoadModel(path string, opts ...LoadOption) (TextModel, error)
	Available() bool
}

var (
	registryMu sync.RWMutex
	registry   = map[string]Backend{}
)

func init() {
	Register(libraryBackend{name: "native"})
	Register(libraryBackend{name: "mlx_lm"})
}

// Register adds b under b.Name(), replacing a backend of that name.
func Register(b Backend) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[b.Name()] = b
}

// Get returns the backend registered as name.
func Get(name string) (Backend, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	b, ok := registry[name]
	return b, ok
}

// List returns the registered backends' names, "native" and "mlx_lm" first, then the
// others in name order.
func List() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	var names []string
	for n := range registry {
		names = append(names, n)
	}
	rank := func(n string) int {
		switch n {
		case "native":
			return 0
		case "mlx_lm":
			return 1
		}
		return 2
	}
	sort.Slice(names, func(i, j int) bool {
		if rank(names[i]) != rank(names[j]) {
			return rank(names[i]) < rank(names[j])
		}
		return names[i] < names[j]
	})
	return names
}

// ErrNoBackend is Default's error when no registered backend is available.
var ErrNoBackend = errors.New("mlx: no available backend")

// Default returns the preferred available backend: the first of List that is available.
func Default() (Backend, error) {
	for _, n := range List() {
		if b, ok := Get(n); ok && b.Available() {
			return b, nil
		}
	}
	return nil, ErrNoBackend
}

// LoadTextModel loads path with the backend WithBackend names (a registered one, the
// library's or another), or Default's when none is named.
func LoadTextModel(path string, opts ...LoadOption) (TextModel, error) {
	var cfg LoadConfig
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	var b Backend
	if cfg.Backend == "" {
		d, err := Default()
		if err != nil {
			return nil, err
		}
		b = d
	} else {
		r, ok := Get(cfg.Backend)
		if !ok {
			return nil, invalid(`unknown backend "` + cfg.Backend + `" (registered: ` + strings.Join(List(), ", ") + ")")
		}
		b = r
	}
	return b.LoadModel(path, opts...)
}

// BackendStatus is whether one of the library's backends can run here.
type BackendStatus struct {
	Name      string
	Available bool
	// Reason says why not when it is not available; Version what it runs on when it is.
	Reason  string
	Version string
}

// Backends reports the library's backends. opts may choose the mlx_lm backend's Python
// (WithPython, WithVenv). The first check of a Python starts it once (seconds); later
// answers come from memory.
func Backends(opts ...LoadOption) []BackendStatus {
	var cfg LoadConfig
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	var out []BackendStatus
	for i := 0; ; i++ {
		name := C.mlxrun_backend_name(C.size_t(i))
		if name == nil {
			return out
		}
		out = append(out, backendStatus(C.GoString(name), cfg.Python, cfg.Venv))
	}
}

func backendStatus(name, python, venv string) BackendStatus {
	st := BackendStatus{Name: name}
	var a cArena
	defer a.free()
	cname, err := a.cString(name, "backend name")
	var cpy, cvenv *C.char
	if err == nil && python != "" {
		cpy, err = a.cString(python, "python")
	}
	if err == nil && venv != "" {
		cvenv, err = a.cString(venv, "venv")
	}
	if err != nil {
		st.Reason = err.Error()
		return st
	}
	var avail C.bool
	// The library's error message is per thread: the call and its reading stay on one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	text, err := readText(func(p *C.char, capacity C.size_t, needed *C.size_t) C.enum_mlxrun_status {
		return C.mlxrun_backend_available(cname, cpy, cvenv, &avail, p, capacity, needed)
	})
	if err != nil {
		st.Reason = err.Error()
		return st
	}
	st.Available = bool(avail)
	if st.Available {
		st.Version = text
	} else {
		st.Reason = text
	}
	return st
}

// libraryBackend is one of the C library's backends.
type libraryBackend struct{ name string }

func (b libraryBackend) Name() string { return b.name }

func (b libraryBackend) Available() bool { return backendStatus(b.name, "", "").Available }

// LoadModel loads path with this backend (a WithBackend among opts is overridden).
func (b libraryBackend) LoadModel(path string, opts ...LoadOption) (TextModel, error) {
	m, err := LoadModel(path, append(append([]LoadOption(nil), opts...), WithBackend(b.name))...)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Backend names the backend that runs the model ("native" or "mlx_lm").
func (m *Model) Backend() string {
	if err := m.enter(); err != nil {
		return ""
	}
	defer m.exit()
	return C.GoString(C.mlxrun_model_backend(m.ptr))
}
