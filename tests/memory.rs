//! MLX's allocator counters through the Rust API. One test per binary run in sequence
//! (the counters are process-wide, so these tests share one #[test]).
use mlxrun::mlx::{memory, random, Array, Dtype};

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
}
