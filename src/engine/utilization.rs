//! GPU utilisation sampled while a call runs, for `Metrics`.
//!
//! A background thread reads the GPU's utilisation counter every `INTERVAL` until the call
//! ends, so the token loop itself does nothing: starting costs one thread spawn, stopping a
//! channel send and a join. Where no counter can be read (the CPU, macOS's Metal, Linux
//! without NVIDIA's driver library) no thread starts and the metrics say `None`. Reading
//! the counter touches neither MLX nor the model, so results are unchanged.
use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use super::metrics::Metrics;
use crate::mlx::device_info::{DeviceInfo, DeviceKind};
use crate::mlx::nvml::{self, Gpu};
use crate::mlx::{Device, DeviceType};

/// Between samples. NVML's own counter covers the driver's last sample period (1/6 s to
/// 1 s by card), so sampling faster only repeats values.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// Mean and maximum of the samples taken, in percent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UtilizationStats {
    pub mean: f32,
    pub max: f32,
    pub samples: usize,
}

impl UtilizationStats {
    /// `None` for no samples.
    pub fn of(samples: &[u32]) -> Option<UtilizationStats> {
        let max = *samples.iter().max()?;
        let mean = samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64;
        Some(UtilizationStats { mean: mean as f32, max: max as f32, samples: samples.len() })
    }
}

/// Samples the default device's utilisation until `finish`.
pub struct UtilizationSampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Vec<u32>>,
    gpu: Gpu,
}

impl UtilizationSampler {
    /// Starts sampling the calling thread's default device, or returns `None` where its
    /// utilisation cannot be read (see [`availability`]).
    pub fn start() -> Option<UtilizationSampler> {
        let gpu = default_gpu().ok()?;
        let nvml = nvml::shared().ok()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mlxrun-gpu-util".into())
            .spawn(move || {
                let mut samples = Vec::new();
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Ok(u) = nvml.utilization(gpu) {
                        samples.push(u);
                    }
                }
                samples
            })
            .ok()?;
        Some(UtilizationSampler { stop, thread, gpu })
    }

    /// Stops sampling; a call shorter than one interval gets one sample taken now.
    pub fn finish(self) -> Option<UtilizationStats> {
        let _ = self.stop.send(());
        let mut samples = self.thread.join().ok()?;
        if samples.is_empty() {
            samples.extend(nvml::shared().ok().and_then(|n| n.utilization(self.gpu).ok()));
        }
        UtilizationStats::of(&samples)
    }

    /// `finish`, written into `metrics`.
    pub fn finish_into(sampler: Option<UtilizationSampler>, metrics: &mut Metrics) {
        if let Some(s) = sampler.and_then(UtilizationSampler::finish) {
            metrics.gpu_utilization_mean = Some(s.mean);
            metrics.gpu_utilization_max = Some(s.max);
        }
    }
}

/// Whether the default device's utilisation can be sampled, and if not why.
pub fn availability() -> Result<(), String> {
    default_gpu().map(|_| ())
}

/// The NVML handle of the default device, resolved once per device index.
fn default_gpu() -> Result<Gpu, String> {
    let device = Device::default_device().map_err(|e| e.to_string())?;
    if device.kind == DeviceType::Cpu {
        return Err("the device is the CPU; utilisation is sampled for GPUs only".into());
    }
    if cfg!(target_os = "macos") {
        return Err("Metal has no public utilisation counter (IOKit's is undocumented); not sampled on macOS".into());
    }
    static GPUS: OnceLock<Mutex<HashMap<i32, Result<Gpu, String>>>> = OnceLock::new();
    let mut gpus = GPUS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    gpus.entry(device.index).or_insert_with(|| resolve(device)).clone()
}

/// NVML's handle for an MLX CUDA device: by PCI bus id (CUDA's indices are renumbered by
/// CUDA_VISIBLE_DEVICES, NVML's are not), else by index.
fn resolve(device: Device) -> Result<Gpu, String> {
    let nvml = nvml::shared().map_err(str::to_string)?;
    let info = DeviceInfo::of(device).map_err(|e| e.to_string())?;
    if info.kind != DeviceKind::Cuda {
        return Err(format!("a {} device has no NVML counter", info.kind.name()));
    }
    match info.text("pci_bus_id") {
        Some(bus) if !bus.is_empty() => nvml.gpu_by_pci_bus_id(bus),
        _ => nvml.gpu_by_index(device.index as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_samples() {
        assert_eq!(UtilizationStats::of(&[]), None);
        let s = UtilizationStats::of(&[10, 90, 50]).unwrap();
        assert_eq!((s.mean, s.max, s.samples), (50.0, 90.0, 3));
    }

    #[test]
    fn unavailable_on_the_cpu_with_a_reason() {
        Device::cpu().set_default().unwrap();
        let why = availability().unwrap_err();
        assert!(why.contains("CPU"), "{why}");
        assert!(UtilizationSampler::start().is_none());
        let mut m = Metrics::default();
        UtilizationSampler::finish_into(None, &mut m);
        assert_eq!((m.gpu_utilization_mean, m.gpu_utilization_max), (None, None));
    }
}
