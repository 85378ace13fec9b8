//! MLX's memory limit as a cap on what the engine takes: a load whose weights do not fit
//! is refused with an error naming the need and the limit (and the model loads once the
//! limit is raised), classify under a tight limit runs in smaller batches with the same
//! results, and a model already loaded keeps serving throughout. The limit is
//! process-wide, so the tests take turns.
mod common;

use std::sync::Mutex;

use mlxrun::engine::{BatchParams, GenerateParams, Model};
use mlxrun::mlx::{memory, Array, Dtype};
use mlxrun::LoadOptions;

static LIMIT: Mutex<()> = Mutex::new(());

/// Sets the memory limit for the rest of the scope, restoring the previous one after.
struct LimitGuard(usize);

impl LimitGuard {
    fn set(limit: usize) -> LimitGuard {
        LimitGuard(memory::set_memory_limit(limit).unwrap())
    }
}

impl Drop for LimitGuard {
    fn drop(&mut self) {
        memory::set_memory_limit(self.0).unwrap();
    }
}

fn load(fixture: &str) -> mlxrun::Result<Model> {
    Model::load(common::deps_file(&format!("fixtures/{fixture}")), &LoadOptions::default())
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams { max_tokens, ..GenerateParams::default() }
}

/// The served model's answer, to check it is unchanged by what happens around it.
fn serve(m: &mut Model) -> Vec<u32> {
    m.generate("The capital of France is", &greedy(8), |_| true).unwrap().tokens
}

/// What MLX itself does with the limit on this CPU backend: nothing. Its CPU allocator
/// counts bytes and calls malloc without looking at the limit (mlx/backend/no_gpu/
/// allocator.cpp), so an array far over the limit is allocated and computed. That is why
/// the engine checks the limit itself before large allocations. (Metal and CUDA throw
/// from the allocator instead; the shim turns that into an error.)
#[test]
fn mlx_cpu_allocator_does_not_enforce_the_limit() {
    let _turn = LIMIT.lock().unwrap_or_else(|p| p.into_inner());
    if mlxrun::mlx::Device::default_device().unwrap() != mlxrun::mlx::Device::cpu() {
        return;
    }
    memory::clear_cache();
    let _limit = LimitGuard::set(memory::active_memory() + (1 << 20));
    let a = Array::ones(&[4 << 20], Dtype::F32).unwrap().add(&Array::ones(&[1], Dtype::F32).unwrap()).unwrap();
    a.eval().unwrap();
    assert!(memory::active_memory() > memory::memory_limit(), "16 MiB allocated under a 1 MiB limit");
    assert_eq!(a.sum(None, false).unwrap().item::<f32>().unwrap(), 2.0 * (4 << 20) as f32);
}

#[test]
fn a_load_over_the_limit_is_refused_naming_both_numbers_then_loads_when_raised() {
    let _turn = LIMIT.lock().unwrap_or_else(|p| p.into_inner());
    let mut served = load("gemma3").unwrap();
    let answer = serve(&mut served);

    // The weights' size, measured: what loading adds to active memory.
    memory::clear_cache();
    let before = memory::active_memory();
    let probe = load("qwen3").unwrap();
    let expected = serve_probe(&probe);
    memory::clear_cache();
    let weights = memory::active_memory() - before;
    drop(probe);
    memory::clear_cache();

    // A limit leaving half the weights' size free.
    let active = memory::active_memory();
    let limit = active + weights / 2;
    {
        let _limit = LimitGuard::set(limit);
        let err = load("qwen3").err().expect("a load over the limit must fail").to_string();
        assert!(err.contains(&limit.to_string()), "the error names the limit {limit}: {err}");
        let need: usize = err
            .split_whitespace()
            .skip_while(|w| *w != "about")
            .nth(1)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("the error names the bytes needed: {err}"));
        // The estimate from the headers is the weights' size (within 1%: the live model
        // also holds a few small arrays of its own).
        let off = (need as f64 - weights as f64).abs() / weights as f64;
        assert!(off < 0.01, "estimated {need} bytes, loading took {weights} ({:.2}% off)", off * 100.0);
        assert!(err.contains("qwen3"), "the error names the model: {err}");
        memory::clear_cache();
        assert_eq!(memory::active_memory(), active, "a refused load leaves nothing allocated");
        assert_eq!(serve(&mut served), answer, "the loaded model keeps serving after a refused load");
    }
    {
        let _limit = LimitGuard::set(active + weights + weights / 10);
        let loaded = load("qwen3").expect("the load fits once the limit is raised");
        assert_eq!(serve_probe(&loaded), expected);
    }
    assert_eq!(serve(&mut served), answer);
}

fn serve_probe(m: &Model) -> Vec<u32> {
    let mut caches = m.language_model().new_caches();
    let logits = m.language_model().forward(&Array::from_slice(&[1i32, 2, 3], &[1, 3]).unwrap(), &mut caches).unwrap();
    logits.argmax(-1, false).unwrap().astype(Dtype::U32).unwrap().to_vec::<u32>().unwrap()
}

#[test]
fn classify_under_a_tight_limit_runs_smaller_batches_with_the_same_results() {
    let _turn = LIMIT.lock().unwrap_or_else(|p| p.into_inner());
    let mut served = load("gemma3").unwrap();
    let answer = serve(&mut served);
    let mut m = load("qwen3").unwrap();
    let prompts: Vec<String> = (0..48).map(|i| format!("Prompt number {i}: {}", "tell me more ".repeat(1 + i % 7))).collect();
    let prompts: Vec<&str> = prompts.iter().map(|s| s.as_str()).collect();
    let params = greedy(1);
    let batch = BatchParams { return_logits: true, ..BatchParams::default() };

    let free = m.classify(&prompts, &params, &batch).unwrap();
    let free_peak = m.last_metrics().unwrap().peak_memory;
    memory::clear_cache();
    let active = memory::active_memory();
    let unlimited_extra = free_peak - active;

    // A limit leaving a twentieth of what the unlimited call used on top of the weights.
    let tight = {
        let _limit = LimitGuard::set(active + unlimited_extra / 20);
        let r = m.classify(&prompts, &params, &batch).unwrap();
        assert_eq!(serve(&mut served), answer, "the other model serves under the limit");
        r
    };
    let tight_peak = m.last_metrics().unwrap().peak_memory;
    for (i, (a, b)) in free.iter().zip(&tight).enumerate() {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        assert_eq!(a.token, b.token, "prompt {i}: token");
        let (la, lb) = (a.logits.as_ref().unwrap(), b.logits.as_ref().unwrap());
        let worst = la.iter().zip(lb).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "prompt {i}: logits differ by {worst}");
    }
    assert!(
        tight_peak - active < (free_peak - active) / 4,
        "under the limit the batches are smaller: peak {} bytes over the weights, {} without the limit",
        tight_peak - active,
        free_peak - active
    );
    println!("classify of 48 prompts: peak {} bytes above the weights without a limit, {} under it", free_peak - active, tight_peak - active);
    assert_eq!(serve(&mut served), answer);
}
