package mlx

/*
#include "bridge.h"
*/
import "C"

import "runtime"

// MLX (0.31.2 and later) keeps its streams per OS thread: an array that a call leaves
// unevaluated belongs to the stream of the thread that made it, and evaluating it on
// another thread fails with "There is no Stream(cpu, N) in current thread". The library
// leaves such arrays on a model: the adapter that mlxrun_model_apply_lora makes and the
// one mlxrun_model_load_adapter (or a load with an adapter path) reads are evaluated by
// the first call that uses them. Go runs goroutines on whatever OS thread is free, so a
// model's MLX work all runs on one OS thread of its own, its worker: the load, the
// generations, batches, sessions, adapters, training and the free. The calls that do no
// MLX work (tokenizing, chat templates, mlxrun_cancel, metrics) run where they are made,
// so they never wait for the worker.

// worker runs functions one at a time on one locked OS thread.
type worker struct {
	jobs chan func()
}

func newWorker() *worker {
	w := &worker{jobs: make(chan func())}
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for f := range w.jobs {
			f()
		}
	}()
	return w
}

// do runs f on the worker's thread and waits for it; a panic in f is raised again in the
// caller. f must not call do on the same worker (it would wait for itself).
func (w *worker) do(f func()) {
	done := make(chan any, 1)
	w.jobs <- func() {
		panicked := true
		defer func() {
			if panicked {
				done <- recover()
			}
		}()
		f()
		panicked = false
		done <- nil
	}
	if p := <-done; p != nil {
		panic(p)
	}
}

// stop ends the worker once its last function has run; do must not be called after.
func (w *worker) stop() { close(w.jobs) }

// callOn runs one fallible C call on m's worker and returns its error (read on the same
// thread, where the library keeps it).
func (m *Model) callOn(f func() C.enum_mlxrun_status) error {
	var err error
	m.w.do(func() { err = lastError(f()) })
	return err
}
