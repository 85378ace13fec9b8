//! The C API's versioned parameter structs, read from fuzz bytes through the exported
//! functions themselves: load, generate, batch, chat and discover parameters, and the
//! output structs whose `struct_size` the caller sets (device, model info, metrics,
//! discovered models and backends).
//!
//! Each struct is handed over as a C caller with some header would hand it: a heap block
//! of exactly `struct_size` bytes (an older header's shorter struct, a newer one's longer
//! struct, or a size too small to be any), so AddressSanitizer sees any byte the library
//! reads or writes past what the caller has. `struct_size` ends at a field boundary (a
//! real header's struct does) or lies below the first version (which must be refused).
//! Pointers are NULL or point at strings and arrays of the stated length; bools are 0 or 1
//! (C's `bool` holds nothing else). The Python a backend or discovery would start is
//! always a path that does not exist: nothing the input names is ever executed.
//!
//! A tiny GGUF model (the one tests/common/gguf_writer.rs makes, with a chat template) is
//! loaded once; calls on it with a valid struct stop before any generation (no prompt).
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::{c_char, CString};
use std::mem::{offset_of, size_of, size_of_val};
use std::path::PathBuf;
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use mlxrun::capi::*;

use super::gguf_writer::{self, Kv};

const NO_PYTHON: &str = "/nonexistent/mlxrun-fuzz-python";
const NO_VENV: &str = "/nonexistent/mlxrun-fuzz-venv";
const NO_MODEL: &str = "/nonexistent/mlxrun-fuzz-model";

/// The input, read front to back; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn u64(&mut self) -> u64 {
        self.u32() as u64 | (self.u32() as u64) << 32
    }
    /// An integer field: mostly small values (the valid ones are), sometimes any.
    fn int(&mut self) -> i32 {
        match self.byte() % 4 {
            0 => 0,
            1 => self.byte() as i8 as i32,
            2 => self.byte() as i32 % 16,
            _ => self.u32() as i32,
        }
    }
    fn f32(&mut self) -> f32 {
        match self.byte() % 4 {
            0 => 0.0,
            1 => 1.0,
            2 => self.byte() as f32 / 64.0,
            _ => f32::from_bits(self.u32()),
        }
    }
    /// A string of up to 31 bytes (no NUL; maybe invalid UTF-8).
    fn cstring(&mut self) -> CString {
        let n = self.byte() as usize % 32;
        let bytes: Vec<u8> = (0..n).map(|_| self.byte()).filter(|&b| b != 0).collect();
        CString::new(bytes).unwrap()
    }
    /// NULL or one of `choices`.
    fn choice(&mut self, choices: &[&'static str]) -> Option<CString> {
        let i = self.byte() as usize % (choices.len() + 1);
        choices.get(i).map(|s| CString::new(*s).unwrap())
    }
}

fn ptr(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(null(), |s| s.as_ptr())
}

/// A caller's struct: a zeroed heap block of exactly `size` bytes (at least the 4 of
/// `struct_size`), holding the first bytes of `value` with `struct_size` = `size`.
struct CallerStruct {
    ptr: *mut u8,
    layout: Layout,
}

impl CallerStruct {
    fn new<T: Copy>(value: &T, size: u32) -> CallerStruct {
        let layout = Layout::from_size_align((size as usize).max(4), 8).unwrap();
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        let n = (size as usize).min(size_of::<T>());
        unsafe {
            std::ptr::copy_nonoverlapping(value as *const T as *const u8, ptr, n);
            (ptr as *mut u32).write(size);
        }
        CallerStruct { ptr, layout }
    }
    fn as_ptr<T>(&self) -> *mut T {
        self.ptr as *mut T
    }
}

impl Drop for CallerStruct {
    fn drop(&mut self) {
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// The struct sizes a caller may pass: the full struct, a shorter one ending at one of
/// `ends` (an older header), a longer one (a newer header), or too small for any.
fn struct_size(inp: &mut Input, full: usize, ends: &[usize]) -> u32 {
    match inp.byte() % 4 {
        0 => full as u32,
        1 => ends[inp.byte() as usize % ends.len()] as u32,
        2 => (full + inp.byte() as usize % 64) as u32,
        _ => inp.byte() as u32 % (ends[0] as u32 + 1),
    }
}

/// Where each field of a struct value ends (the sizes an older header's struct can have).
macro_rules! field_ends {
    ($t:ty, $v:expr; $($f:ident),+) => {
        vec![$(offset_of!($t, $f) + size_of_val(&$v.$f)),+]
    };
}

struct Model(*mut mlxrun_model);
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

/// The folder holding the tiny model, and the model loaded from it.
fn tiny() -> &'static (PathBuf, Model) {
    static TINY: OnceLock<(PathBuf, Model)> = OnceLock::new();
    TINY.get_or_init(|| {
        let dir = super::scratch_dir("capi");
        let (mut kvs, tensors) = gguf_writer::tiny_llama("llama");
        let template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
        kvs.push(("tokenizer.chat_template", Kv::Str(template.into())));
        let path = super::write(&dir, "tiny.gguf", &gguf_writer::write(&kvs, &tensors));
        let c = CString::new(path.to_str().unwrap()).unwrap();
        let mut m = null_mut();
        let status = unsafe { mlxrun_model_load(c.as_ptr(), null(), &mut m) };
        assert_eq!(status, mlxrun_status::MLXRUN_OK, "cannot load the tiny model");
        (dir, Model(m))
    })
}

/// Loads the tiny model before the first input.
pub fn init() {
    tiny();
}

pub fn run(data: &[u8]) {
    let mut inp = Input(data);
    unsafe {
        match inp.byte() % 5 {
            0 => load(&mut inp),
            1 => generate(&mut inp),
            2 => chat(&mut inp),
            3 => discover(&mut inp),
            _ => outputs(&mut inp),
        }
    }
}

unsafe fn load(inp: &mut Input) {
    let path = if inp.bool() { tiny().0.join("tiny.gguf") } else { PathBuf::from(NO_MODEL) };
    let path = CString::new(path.to_str().unwrap()).unwrap();
    let adapter = match inp.byte() % 3 {
        0 => None,
        1 => Some(CString::new(NO_MODEL).unwrap()),
        _ => Some(inp.cstring()),
    };
    let backend = match inp.byte() % 3 {
        0 => inp.choice(&["", "native", "mlx_lm"]),
        _ => Some(inp.cstring()),
    };
    let python = Some(CString::new(NO_PYTHON).unwrap());
    let venv = inp.choice(&[NO_VENV]);
    let mut p = mlxrun_load_default_params();
    p.device = inp.int();
    p.dtype = inp.int();
    p.context_length = inp.u32();
    p.quantize_bits = inp.int();
    p.quantize_group_size = inp.int();
    p.quantize_mode = inp.int();
    p.keep_quantized = inp.int();
    p.adapter_path = ptr(&adapter);
    p.backend = ptr(&backend);
    p.python = ptr(&python);
    p.venv = ptr(&venv);
    p.backend_timeout_ms = inp.u32() % 2000;
    let ends = field_ends!(mlxrun_load_params, p; keep_quantized, adapter_path, backend, python, venv, backend_timeout_ms);
    let s = CallerStruct::new(&p, struct_size(inp, size_of_val(&p), &ends));
    let mut m = null_mut();
    let status = mlxrun_model_load(path.as_ptr(), s.as_ptr(), &mut m);
    assert_eq!(status == mlxrun_status::MLXRUN_OK, !m.is_null(), "a load's status and handle disagree");
    mlxrun_model_free(m);
}

unsafe fn generate(inp: &mut Input) {
    let model = tiny().1 .0;
    let stop_ids: Vec<i32> = (0..inp.byte() % 4).map(|_| inp.int()).collect();
    let stop_strings: Vec<CString> = (0..inp.byte() % 4).map(|_| inp.cstring()).collect();
    let stop_ptrs: Vec<*const c_char> = stop_strings.iter().map(|s| s.as_ptr()).collect();
    let mut p = mlxrun_generate_default_params();
    p.max_tokens = inp.u32();
    p.temperature = inp.f32();
    p.top_k = inp.int();
    p.top_p = inp.f32();
    p.min_p = inp.f32();
    p.repetition_penalty = inp.f32();
    p.repetition_context_size = inp.u32();
    p.seed = inp.u64();
    p.has_seed = inp.bool();
    p.ignore_eos = inp.bool();
    p.logprobs = inp.bool();
    (p.stop_tokens, p.n_stop_tokens) = if stop_ids.is_empty() { (null(), 0) } else { (stop_ids.as_ptr(), stop_ids.len()) };
    (p.stop_strings, p.n_stop_strings) = if stop_ptrs.is_empty() { (null(), 0) } else { (stop_ptrs.as_ptr(), stop_ptrs.len()) };
    p.prefill_step_size = inp.u32();
    p.kv_bits = inp.int();
    p.kv_group_size = inp.int();
    p.quantized_kv_start = inp.int();
    let ends = field_ends!(mlxrun_generate_params, p; prefill_step_size, kv_bits, kv_group_size, quantized_kv_start);
    let gen = CallerStruct::new(&p, struct_size(inp, size_of_val(&p), &ends));
    // No prompt: the parameters are read and checked, then the empty prompt is refused.
    let status = mlxrun_generate_tokens(model, null(), 0, gen.as_ptr(), None, null_mut(), null_mut());
    assert_ne!(status, mlxrun_status::MLXRUN_OK, "generation from no prompt succeeded");

    let mut b = mlxrun_batch_default_params();
    b.max_batch_size = inp.u32();
    b.return_logits = inp.bool();
    let ends = field_ends!(mlxrun_batch_params, b; return_logits);
    let batch = CallerStruct::new(&b, struct_size(inp, size_of_val(&b), &ends));
    // One empty prompt: refused per row (or for the call), never computed.
    let empty = CString::new("").unwrap();
    let prompts = [empty.as_ptr()];
    let mut results: [mlxrun_classify_result; 1] = std::mem::zeroed();
    mlxrun_classify(model, prompts.as_ptr(), 1, gen.as_ptr(), batch.as_ptr(), results.as_mut_ptr(), null_mut());
}

unsafe fn chat(inp: &mut Input) {
    let model = tiny().1 .0;
    let n = inp.byte() as usize % 4;
    let strings: Vec<(Option<CString>, Option<CString>)> = (0..n)
        .map(|_| {
            let role = if inp.byte() % 8 == 0 { None } else { Some(inp.cstring()) };
            let content = if inp.byte() % 8 == 0 { None } else { Some(inp.cstring()) };
            (role, content)
        })
        .collect();
    let messages: Vec<mlxrun_message> = strings.iter().map(|(r, c)| mlxrun_message { role: ptr(r), content: ptr(c) }).collect();
    let name = if inp.bool() { Some(inp.cstring()) } else { inp.choice(&["default", "tool_use"]) };
    let kwargs = if inp.bool() { Some(inp.cstring()) } else { inp.choice(&["{}", "{\"enable_thinking\": false}", "[]"]) };
    let mut p = mlxrun_chat_default_params();
    p.add_generation_prompt = inp.bool();
    p.template_name = ptr(&name);
    p.template_kwargs_json = ptr(&kwargs);
    let ends = field_ends!(mlxrun_chat_params, p; add_generation_prompt, template_name, template_kwargs_json);
    let params = CallerStruct::new(&p, struct_size(inp, size_of_val(&p), &ends));
    let capacity = inp.byte() as usize * 2;
    let buf = (capacity > 0).then(|| vec![0 as c_char; capacity]);
    let buf_ptr = buf.as_ref().map_or(null_mut(), |b| b.as_ptr() as *mut c_char);
    let mut needed = 0usize;
    let msgs = if messages.is_empty() && inp.bool() { null() } else { messages.as_ptr() };
    let status = mlxrun_apply_chat_template(model, msgs, messages.len(), params.as_ptr(), buf_ptr, capacity, &mut needed);
    if status == mlxrun_status::MLXRUN_OK {
        assert!(needed <= capacity && *buf_ptr.add(needed - 1) == 0, "the rendered text does not end with its NUL where `needed` says");
    }
}

unsafe fn discover(inp: &mut Input) {
    let dir = CString::new(tiny().0.to_str().unwrap()).unwrap();
    let venv = inp.choice(&[NO_VENV]);
    let python = Some(CString::new(NO_PYTHON).unwrap());
    let mut p = mlxrun_discover_default_params();
    p.max_depth = inp.u32() % 8;
    p.python = ptr(&python);
    p.venv = ptr(&venv);
    let ends = field_ends!(mlxrun_discover_params, p; max_depth, python, venv);
    let params = CallerStruct::new(&p, struct_size(inp, size_of_val(&p), &ends));
    let mut list = null_mut();
    if mlxrun_discover(dir.as_ptr(), params.as_ptr(), &mut list) != mlxrun_status::MLXRUN_OK {
        return;
    }
    let count = mlxrun_discovered_list_count(list);
    for i in 0..=count {
        let size = struct_size(inp, size_of::<mlxrun_discovered_model>(), &[8, size_of::<mlxrun_discovered_model>()]);
        let out = CallerStruct::new(&0u32, size);
        mlxrun_discovered_list_get(list, i, out.as_ptr());
        for b in 0..3 {
            let size = struct_size(inp, size_of::<mlxrun_discovered_backend>(), &[8, size_of::<mlxrun_discovered_backend>()]);
            let out = CallerStruct::new(&0u32, size);
            mlxrun_discovered_list_get_backend(list, i, b, out.as_ptr());
        }
    }
    mlxrun_discovered_list_free(list);
}

/// The structs the library fills: only `struct_size` is the caller's.
unsafe fn outputs(inp: &mut Input) {
    let model = tiny().1 .0;
    let size = struct_size(inp, size_of::<mlxrun_device_info>(), &[4, 8]);
    mlxrun_get_device_info(CallerStruct::new(&0u32, size).as_ptr());
    let size = struct_size(inp, size_of::<mlxrun_model_info>(), &[4, 8, 16]);
    mlxrun_model_get_info(model, CallerStruct::new(&0u32, size).as_ptr());
    let size = struct_size(inp, size_of::<mlxrun_metrics>(), &[4, 8, 16]);
    mlxrun_model_metrics(model, CallerStruct::new(&0u32, size).as_ptr());
}
