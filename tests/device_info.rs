//! `DeviceInfo` on this machine's CPU against what Linux reports (/proc/cpuinfo,
//! /proc/meminfo) and what MLX reports, and the memory limits it gives against the ones set.
use mlxrun::mlx::device_info::{DeviceInfo, DeviceKind, InfoValue};
use mlxrun::mlx::{memory, Device, DeviceType};

/// The limits are process-wide: tests that set them or compare them run one at a time.
static LIMITS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn proc_field(file: &str, key: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let line = text.lines().find(|l| l.split(':').next().unwrap().trim() == key).unwrap_or_else(|| panic!("no {key} in {file}"));
    line.split_once(':').unwrap().1.trim().to_string()
}

#[cfg(target_os = "linux")]
#[test]
fn the_cpu_as_linux_and_mlx_describe_it() {
    let _limits = LIMITS.lock().unwrap_or_else(|p| p.into_inner());
    Device::cpu().set_default().unwrap();
    let info = DeviceInfo::current().unwrap();
    assert_eq!(info.device, Device { kind: DeviceType::Cpu, index: 0 });
    assert_eq!(info.kind, DeviceKind::Cpu);
    assert_eq!(info.name, proc_field("/proc/cpuinfo", "model name"));
    let kib: u64 = proc_field("/proc/meminfo", "MemTotal").trim_end_matches("kB").trim().parse().unwrap();
    assert_eq!(info.memory_size, Some(kib * 1024));
    assert_eq!(info.architecture, std::env::consts::ARCH);
    // What MLX reported is kept as it said it.
    assert!(info.properties.iter().any(|(k, v)| k == "device_name" && *v == InfoValue::Text(info.name.clone())));
    // Metal and CUDA fields are absent on the CPU.
    assert_eq!((info.max_recommended_working_set_size, info.free_memory), (None, None));
    assert_eq!(info.memory_limit, memory::memory_limit() as u64);
    assert!(info.memory_limit > 0 && info.cache_limit > 0);
}

#[test]
fn the_limits_are_the_ones_in_force() {
    let _limits = LIMITS.lock().unwrap_or_else(|p| p.into_inner());
    let before = DeviceInfo::current().unwrap();
    // MLX's default cache limit is its memory limit.
    let prev_cache = memory::set_cache_limit(123 << 20).unwrap();
    assert_eq!(prev_cache as u64, before.cache_limit, "the cache limit read must be the one MLX held");
    let prev_wired = memory::set_wired_limit(7 << 20).unwrap();
    let prev_mem = memory::set_memory_limit(3 << 30).unwrap();
    let during = DeviceInfo::current().unwrap();
    assert_eq!((during.cache_limit, during.wired_limit, during.memory_limit), (123 << 20, 7 << 20, 3 << 30));
    memory::set_cache_limit(prev_cache).unwrap();
    memory::set_wired_limit(prev_wired).unwrap();
    memory::set_memory_limit(prev_mem).unwrap();
    let after = DeviceInfo::current().unwrap();
    assert_eq!((after.cache_limit, after.memory_limit), (before.cache_limit, before.memory_limit));
    // Reading the cache limit leaves it where it was.
    assert_eq!(memory::cache_limit().unwrap(), prev_cache);
}

#[test]
fn gpu_utilisation_is_absent_where_it_cannot_be_read() {
    Device::cpu().set_default().unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".deps/fixtures/qwen3");
    assert!(dir.exists(), "{} is missing: run scripts/setup.sh", dir.display());
    let mut model = mlxrun::Model::load(&dir, &mlxrun::LoadOptions::default()).unwrap();
    let params = mlxrun::GenerateParams { max_tokens: 4, ..Default::default() };
    let g = model.generate("Hello", &params, |_| true).unwrap();
    assert!(g.metrics.generated_tokens > 0);
    assert_eq!((g.metrics.gpu_utilization_mean, g.metrics.gpu_utilization_max), (None, None));
    assert!(mlxrun::engine::utilization::availability().is_err());
}
