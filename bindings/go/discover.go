package mlx

/*
#include "bridge.h"
*/
import "C"

import (
	"iter"
	"path/filepath"
	"strings"
)

// DiscoveredModel is a model found by Discover: a Hugging Face-layout folder
// (config.json + safetensors) or a GGUF file. The first fields are go-inference's
// DiscoveredModel, so code written against it reads these the same way.
//
//	for m := range mlx.Discover("/Volumes/Data/models") {
//		if m.Error != "" {
//			log.Printf("%s: %s", m.Path, m.Error)
//			continue
//		}
//		fmt.Printf("%s  arch=%s  quant=%dbit  %d params\n", m.Path, m.ModelType, m.QuantBits, m.Params)
//	}
type DiscoveredModel struct {
	Path        string // absolute path of the model folder or GGUF file (links not resolved)
	ModelType   string // config.json model_type, or GGUF general.architecture ("" if unknown)
	QuantBits   int    // bits of the quantized weights; 0 for a dense model
	QuantGroup  int    // their group size (GGUF: the block size); 0 for a dense model
	QuantType   string // GGUF: llama.cpp's file type in lower case ("q4_k_m"); "" otherwise
	QuantFamily string // GGUF: QuantType up to its first underscore ("q4"); "" otherwise
	NumFiles    int    // weight files: safetensors shards, or 1 for a GGUF file
	Format      string // "safetensors" or "gguf"; "" for a folder that could not be listed

	// Error says what is wrong with a broken model (a malformed config.json, no
	// weights, an index naming a missing shard, a truncated file), naming the file;
	// "" when its metadata reads cleanly. A folder that could not be listed is an
	// entry with only Path and Error.
	Error string
	// Backends is each backend's verdict ("native", "mlx_lm"); a broken model is
	// refused by all of them.
	Backends []BackendSupport
	// Dtype is, for safetensors, the float dtype most parameters are stored in
	// ("bfloat16", "float16", "float32"; else config.json's torch_dtype); for GGUF the
	// file type in llama.cpp's names ("Q4_K_M", "F16").
	Dtype string
	// Params counts parameters from the headers' shapes (no weight is read); quantized
	// matrices count as the values they unpack to, as mlx-lm counts them. 0 if unknown.
	Params int64
	// SizeBytes is the size of the model's files: every file directly in the folder,
	// or the GGUF file.
	SizeBytes       int64
	HasTokenizer    bool // tokenizer.json, or a tokenizer in the GGUF metadata
	HasChatTemplate bool // chat_template.jinja, tokenizer_config.json's chat_template, or GGUF's
	// QuantMode is mlx-lm's quantization mode ("affine", "mxfp4", "mxfp8", "nvfp4"), or
	// QuantType for GGUF; "" for a dense model.
	QuantMode string
}

// BackendSupport is whether one backend can load a discovered model, and why not.
type BackendSupport struct {
	Name   string // "native" or "mlx_lm"
	OK     bool
	Reason string // why not ("" when OK)
}

// CanLoad reports whether the backend named name can load the model.
func (m DiscoveredModel) CanLoad(name string) bool {
	for _, b := range m.Backends {
		if b.Name == name {
			return b.OK
		}
	}
	return false
}

// DiscoverConfig is what the DiscoverOptions set.
type DiscoverConfig struct {
	// MaxDepth is the deepest folder level searched, baseDir being level 0 (0: baseDir
	// itself only). The default, 4, reaches a Hugging Face cache's snapshot folders.
	MaxDepth int
	// Python and Venv choose the Python whose mlx-lm judges whether the mlx_lm backend
	// can load each model, as WithPython and WithVenv do for LoadModel.
	Python, Venv string
}

// DiscoverOption sets a DiscoverConfig field.
type DiscoverOption func(*DiscoverConfig)

// WithMaxDepth bounds how many folder levels below baseDir Discover searches.
func WithMaxDepth(n int) DiscoverOption { return func(c *DiscoverConfig) { c.MaxDepth = n } }

// WithDiscoverVenv judges the mlx_lm backend with the virtualenv at dir's Python.
func WithDiscoverVenv(dir string) DiscoverOption { return func(c *DiscoverConfig) { c.Venv = dir } }

// WithDiscoverPython judges the mlx_lm backend with the Python at path.
func WithDiscoverPython(path string) DiscoverOption {
	return func(c *DiscoverConfig) { c.Python = path }
}

// Discover finds the models under baseDir, in path order: model folders and GGUF files,
// searched recursively to a bounded depth, following links (a link loop is harmless:
// each folder is visited once). Only headers are read. Broken models are yielded with
// Error set, never skipped; so is a baseDir that cannot be read (one entry, Path
// baseDir). DiscoverAll returns that failure as an error instead.
//
// The search runs when the sequence is ranged over, each time it is; breaking out of
// the loop early is fine. Safe to call from any goroutine.
func Discover(baseDir string, opts ...DiscoverOption) iter.Seq[DiscoveredModel] {
	return func(yield func(DiscoveredModel) bool) {
		models, err := DiscoverAll(baseDir, opts...)
		if err != nil {
			path, absErr := filepath.Abs(baseDir)
			if absErr != nil {
				path = baseDir
			}
			yield(DiscoveredModel{Path: path, Error: err.Error()})
			return
		}
		for _, m := range models {
			if !yield(m) {
				return
			}
		}
	}
}

// DiscoverAll is Discover as a slice. The error (an *Error: ErrIO for a missing or
// unreadable baseDir, ErrInvalidArgument for a file or a negative depth) concerns
// baseDir itself; problems below it are in the entries' Error.
func DiscoverAll(baseDir string, opts ...DiscoverOption) ([]DiscoveredModel, error) {
	cfg := DiscoverConfig{MaxDepth: int(C.mlxrun_discover_default_params().max_depth)}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.MaxDepth < 0 {
		return nil, invalid("WithMaxDepth: the depth must be 0 or more")
	}
	var a cArena
	defer a.free()
	dir, err := a.cString(baseDir, "baseDir")
	if err != nil {
		return nil, err
	}
	params := C.mlxrun_discover_default_params()
	params.max_depth = C.uint32_t(min(cfg.MaxDepth, 1<<31))
	if cfg.Python != "" {
		if params.python, err = a.cString(cfg.Python, "python"); err != nil {
			return nil, err
		}
	}
	if cfg.Venv != "" {
		if params.venv, err = a.cString(cfg.Venv, "venv"); err != nil {
			return nil, err
		}
	}
	var list *C.mlxrun_discovered_list
	if err := call(func() C.enum_mlxrun_status { return C.mlxrun_discover(dir, &params, &list) }); err != nil {
		return nil, err
	}
	defer C.mlxrun_discovered_list_free(list)
	n := int(C.mlxrun_discovered_list_count(list))
	models := make([]DiscoveredModel, 0, n)
	for i := range n {
		m, err := discovered(list, i)
		if err != nil {
			return nil, err
		}
		models = append(models, m)
	}
	return models, nil
}

// discovered copies entry i of list into Go memory (the list's strings die with it).
func discovered(list *C.mlxrun_discovered_list, i int) (DiscoveredModel, error) {
	var c C.mlxrun_discovered_model
	c.struct_size = C.sizeof_mlxrun_discovered_model
	if err := call(func() C.enum_mlxrun_status { return C.mlxrun_discovered_list_get(list, C.size_t(i), &c) }); err != nil {
		return DiscoveredModel{}, err
	}
	m := DiscoveredModel{
		Path:            C.GoString(c.path),
		ModelType:       C.GoString(c.model_type),
		QuantBits:       int(c.quant_bits),
		QuantGroup:      int(c.quant_group_size),
		NumFiles:        int(c.num_files),
		Format:          C.GoString(c.format),
		Dtype:           C.GoString(c.dtype),
		Params:          int64(c.params),
		SizeBytes:       int64(c.size_bytes),
		HasTokenizer:    bool(c.has_tokenizer),
		HasChatTemplate: bool(c.has_chat_template),
		QuantMode:       C.GoString(c.quant_mode),
	}
	if c.error != nil {
		m.Error = C.GoString(c.error)
	}
	if m.Format == "gguf" && m.QuantMode != "" {
		m.QuantType = m.QuantMode
		m.QuantFamily, _, _ = strings.Cut(m.QuantType, "_")
	}
	for j := range int(c.n_backends) {
		var b C.mlxrun_discovered_backend
		b.struct_size = C.sizeof_mlxrun_discovered_backend
		if err := call(func() C.enum_mlxrun_status {
			return C.mlxrun_discovered_list_get_backend(list, C.size_t(i), C.size_t(j), &b)
		}); err != nil {
			return DiscoveredModel{}, err
		}
		s := BackendSupport{Name: C.GoString(b.name), OK: bool(b.ok)}
		if b.reason != nil {
			s.Reason = C.GoString(b.reason)
		}
		m.Backends = append(m.Backends, s)
	}
	return m, nil
}
