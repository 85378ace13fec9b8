package mlx

/*
#include "bridge.h"
*/
import "C"

// DeviceKind is the MLX backend that runs a device.
type DeviceKind int

const (
	DeviceKindCPU   DeviceKind = C.MLXRUN_DEVICE_KIND_CPU
	DeviceKindMetal DeviceKind = C.MLXRUN_DEVICE_KIND_METAL // Apple's GPUs
	DeviceKindCUDA  DeviceKind = C.MLXRUN_DEVICE_KIND_CUDA  // NVIDIA GPUs (Linux)
)

func (k DeviceKind) String() string {
	switch k {
	case DeviceKindCPU:
		return "cpu"
	case DeviceKindMetal:
		return "metal"
	case DeviceKindCUDA:
		return "cuda"
	}
	return "unknown"
}

// Device describes the device models load onto and the memory limits MLX applies to it.
// Sizes are bytes; 0 where the platform does not report a value.
type Device struct {
	GPU   bool // false: the CPU
	Index int
	Kind  DeviceKind
	// Name is the GPU's name as MLX reports it, or the CPU's model name.
	Name string
	// Architecture is e.g. "applegpu_g14s", "sm_90", "x86_64" ("" when not reported).
	Architecture string
	// MemorySize is unified memory on Apple silicon, the card's memory on CUDA, the
	// system's RAM for the CPU.
	MemorySize uint64
	// FreeMemory is the card's free memory now (CUDA only).
	FreeMemory uint64
	// MaxRecommendedWorkingSetSize is Metal's recommended working set (0 elsewhere).
	MaxRecommendedWorkingSetSize uint64
	MemoryLimitBytes             uint64 // SetMemoryLimit's value in force
	CacheLimitBytes              uint64 // SetCacheLimit's value in force
	// WiredLimitBytes is the last SetWiredLimit value (0, MLX's default, before any);
	// applied on Metal only.
	WiredLimitBytes uint64
}

// DeviceInfo describes MLX's default device (the GPU when MLX has one, unless a model
// was loaded WithDevice("cpu")). Safe from any goroutine.
func DeviceInfo() (Device, error) {
	var d C.mlxrun_device_info
	d.struct_size = C.sizeof_mlxrun_device_info
	if err := call(func() C.enum_mlxrun_status { return C.mlxrun_get_device_info(&d) }); err != nil {
		return Device{}, err
	}
	return Device{
		GPU:                          d.device == C.MLXRUN_DEVICE_GPU,
		Index:                        int(d.index),
		Kind:                         DeviceKind(d.kind),
		Name:                         C.GoString(&d.name[0]),
		Architecture:                 C.GoString(&d.architecture[0]),
		MemorySize:                   uint64(d.memory_size),
		FreeMemory:                   uint64(d.free_memory),
		MaxRecommendedWorkingSetSize: uint64(d.max_recommended_working_set_size),
		MemoryLimitBytes:             uint64(d.memory_limit),
		CacheLimitBytes:              uint64(d.cache_limit),
		WiredLimitBytes:              uint64(d.wired_limit),
	}, nil
}
