//! `mlxrun info --device-info`: the device as MLX and the system describe it.
use std::process::Command;

fn mlxrun(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mlxrun")).args(args).output().unwrap()
}

#[test]
fn info_device_info_describes_the_cpu() {
    let out = mlxrun(&["info", "--device-info", "--device", "cpu", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = mlxrun::mlx::device_info::DeviceInfo::of(mlxrun::mlx::Device::cpu()).unwrap();
    assert_eq!(v["kind"], "cpu");
    assert_eq!(v["name"], want.name);
    assert_eq!(v["memory_size"].as_u64(), want.memory_size);
    assert_eq!(v["mlx"]["device_name"], want.name);
    assert_eq!(v["gpu_utilization"]["available"], false);
    assert!(v["gpu_utilization"]["reason"].as_str().unwrap().contains("CPU"));
    assert!(v["memory_limit"].as_u64().unwrap() > 0 && v["cache_limit"].as_u64().unwrap() > 0);

    let text = mlxrun(&["info", "--device-info", "--device", "cpu"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.starts_with(&want.name) && text.contains("MLX limits:") && text.contains("GPU utilisation: not available"), "{text}");
}

#[test]
fn info_without_a_model_or_device_info_says_what_is_missing() {
    let out = mlxrun(&["info"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model MODEL is required (or --device-info)"));
}
