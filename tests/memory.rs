//! MLX's allocator counters through the Rust API. One test per binary run in sequence
//! (the counters are process-wide, so these tests share one #[test]).
use mlxrun::mlx::fast::{self, RopeFreqs, RopeOffset};
use mlxrun::mlx::{memory, ops, random, Array, Dtype};

#[test]
fn dropped_arrays_return_memory_and_limits_round_trip() {
    // Warm up MLX's process-wide state so it isn't counted as a leak: the global random
    // generator keeps its key in a small array once first used.
    random::normal(&[8], Dtype::F32, 0.0, 1.0, None).unwrap().eval().unwrap();
    memory::clear_cache();
    let start = memory::active_memory();

    // Thousands of arrays: built from slices, computed by ops, random, evaluated, dropped.
    for i in 0..5000 {
        let data: Vec<f32> = (0..256).map(|j| (i * j) as f32).collect();
        let a = Array::from_slice(&data, &[16, 16]).unwrap();
        let b = a.matmul(&a).unwrap().exp().unwrap().sum(Some(&[0]), false).unwrap();
        let c = random::normal(&[64], Dtype::F32, 0.0, 1.0, None).unwrap().add(&b.slice_axis(0, 0, 1).unwrap()).unwrap();
        c.eval().unwrap();
        let _ = c.to_vec::<f32>().unwrap();
    }
    assert_eq!(memory::active_memory(), start, "active memory after dropping 5000 iterations' arrays");

    // Live arrays are counted, and freed on drop.
    let held: Vec<Array> = (0..1000).map(|_| Array::zeros(&[1024], Dtype::F32).unwrap()).collect();
    for a in &held {
        a.eval().unwrap();
    }
    assert!(memory::active_memory() >= start + 1000 * 4096, "1000 live 4 KiB arrays are counted");
    drop(held);
    assert_eq!(memory::active_memory(), start, "active memory after dropping 1000 live arrays");

    // Peak: rises with a big array, resets below it.
    memory::reset_peak_memory();
    let big = Array::ones(&[4 << 20], Dtype::F32).unwrap();
    big.eval().unwrap();
    assert!(memory::peak_memory() >= 16 << 20);
    drop(big);
    memory::reset_peak_memory();
    assert!(memory::peak_memory() < 16 << 20);

    // The cache keeps freed buffers until cleared.
    assert!(memory::cache_memory() > 0, "freed buffers are cached");
    memory::clear_cache();
    assert_eq!(memory::cache_memory(), 0);

    // Limits return the previous value, so a caller can restore it.
    let prev = memory::set_cache_limit(1 << 20).unwrap();
    assert_eq!(memory::set_cache_limit(prev).unwrap(), 1 << 20);
    let prev = memory::set_memory_limit(3 << 30).unwrap();
    assert_eq!(memory::memory_limit(), 3 << 30);
    assert_eq!(memory::set_memory_limit(prev).unwrap(), 3 << 30);
    let prev = memory::set_wired_limit(0).unwrap();
    assert_eq!(memory::set_wired_limit(prev).unwrap(), 0);

    cpu_kernels_take_over_spent_inputs();
}

/// The CPU's one-node kernels (RMS norm, rotary positions, the gates) write into their
/// input's buffer when nothing else still uses it, as MLX's element-wise ops do: a prompt's
/// norm of a temporary holds one buffer of its size, not two. Without it a prompt's peak
/// was 2-5% higher (SmolLM2-135M Q4_1 at 2048 tokens: 391 against 379 MB).
fn cpu_kernels_take_over_spent_inputs() {
    if !ops::set_cpu_fast_kernels(true).unwrap() {
        return; // no one-node kernels in this build (macOS): nothing to check
    }
    const MIB: usize = 1 << 20;
    let x = random::normal(&[1, 4, 1024, 1024], Dtype::F32, 0.0, 1.0, None).unwrap(); // 16 MiB
    let w = random::normal(&[1024], Dtype::F32, 0.0, 1.0, None).unwrap();
    x.eval().unwrap();
    w.eval().unwrap();
    // Each kernel of two 16 MiB inputs a = x + 1 and b = x / 2 (the norm and the rotation
    // take a alone), and how much a spent a (and b) take while it runs in place: one
    // buffer per input, the output in one of them.
    type Kernel<'a> = Box<dyn Fn(&Array, &Array) -> Array + 'a>;
    let cases: Vec<(&str, Kernel, usize)> = vec![
        ("RMS norm", Box::new(|a, _| fast::rms_norm(a, Some(&w), 1e-5).unwrap()), 16),
        (
            "rotary positions",
            Box::new(|a, _| fast::rope(a, 1024, false, RopeFreqs::Base(10000.0), 1.0, RopeOffset::Fixed(3)).unwrap()),
            16,
        ),
        ("SiLU gate", Box::new(|a, b| ops::silu_mul(a, b).unwrap()), 32),
        ("tanh GELU gate", Box::new(|a, b| ops::gelu_tanh_mul(a, b).unwrap()), 32),
    ];
    let inputs = || (x.add_scalar(1.0).unwrap(), x.mul_scalar(0.5).unwrap());
    for (what, kernel, in_place_mib) in cases {
        // On inputs the caller holds: a new buffer, the inputs left as they were.
        let (a, b) = inputs();
        a.eval().unwrap();
        b.eval().unwrap();
        let a_before = a.to_vec::<f32>().unwrap();
        let want = kernel(&a, &b).to_vec::<f32>().unwrap();
        assert_eq!(a.to_vec::<f32>().unwrap(), a_before, "{what}: a held input was overwritten");
        drop((a, b));

        // On temporaries nothing else holds: in place, the same values.
        memory::clear_cache();
        let start = memory::active_memory();
        memory::reset_peak_memory();
        let y = {
            let (a, b) = inputs();
            kernel(&a, &b)
        };
        y.eval().unwrap();
        let extra = memory::peak_memory() - start;
        assert!(
            extra < (in_place_mib + 8) * MIB,
            "{what}: on spent temporaries it took {} MiB above what was live; in place it takes {in_place_mib}",
            extra / MIB
        );
        assert_eq!(y.to_vec::<f32>().unwrap(), want, "{what}: in place, other values than into a new buffer");
    }
}
