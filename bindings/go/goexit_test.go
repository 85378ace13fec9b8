package mlx_test

import "runtime"

func runtimeGoexit() { runtime.Goexit() }
