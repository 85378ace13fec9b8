package mlx

/*
#include "bridge.h"
*/
import "C"

import (
	"errors"
	"runtime"
	"strconv"
	"strings"
)

// Status is the library's status code (mlxrun_status in include/mlxrun.h).
type Status int

// The library's status codes.
const (
	StatusOK              Status = 0
	StatusInvalidArgument Status = 1  // a bad argument or option
	StatusIO              Status = 2  // a file or folder could not be read
	StatusConfig          Status = 3  // config.json missing, malformed or unsupported
	StatusWeights         Status = 4  // weights missing, truncated or mismatched
	StatusTokenizer       Status = 5  // tokenizer files missing or malformed
	StatusMLX             Status = 6  // MLX refused an operation (e.g. out of memory)
	StatusBufferTooSmall  Status = 7  // internal to the binding; never returned
	StatusInternal        Status = 8  // a bug in the library; the model stays usable
	StatusTemplate        Status = 9  // the chat template is missing or refused the conversation
	StatusCancelled       Status = 10 // training was cancelled
	StatusBackend         Status = 11 // a backend is unavailable, or its worker process failed
	StatusUnsupported     Status = 12 // the model's backend does not do this
)

// The values are the header's (mlxrun_status); this does not compile if they drift.
func _() {
	var x [1]struct{}
	_ = x[StatusOK-C.MLXRUN_OK]
	_ = x[StatusInvalidArgument-C.MLXRUN_ERR_INVALID_ARGUMENT]
	_ = x[StatusIO-C.MLXRUN_ERR_IO]
	_ = x[StatusConfig-C.MLXRUN_ERR_CONFIG]
	_ = x[StatusWeights-C.MLXRUN_ERR_WEIGHTS]
	_ = x[StatusTokenizer-C.MLXRUN_ERR_TOKENIZER]
	_ = x[StatusMLX-C.MLXRUN_ERR_MLX]
	_ = x[StatusBufferTooSmall-C.MLXRUN_ERR_BUFFER_TOO_SMALL]
	_ = x[StatusInternal-C.MLXRUN_ERR_INTERNAL]
	_ = x[StatusTemplate-C.MLXRUN_ERR_TEMPLATE]
	_ = x[StatusCancelled-C.MLXRUN_ERR_CANCELLED]
	_ = x[StatusBackend-C.MLXRUN_ERR_BACKEND]
	_ = x[StatusUnsupported-C.MLXRUN_ERR_UNSUPPORTED]
}

var statusNames = map[Status]string{
	StatusOK:              "ok",
	StatusInvalidArgument: "invalid argument",
	StatusIO:              "I/O error",
	StatusConfig:          "config error",
	StatusWeights:         "weights error",
	StatusTokenizer:       "tokenizer error",
	StatusMLX:             "MLX error",
	StatusBufferTooSmall:  "buffer too small",
	StatusInternal:        "internal error",
	StatusTemplate:        "chat template error",
	StatusCancelled:       "cancelled",
	StatusBackend:         "backend error",
	StatusUnsupported:     "unsupported",
}

func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return "status " + strconv.Itoa(int(s))
}

// Error is a failure reported by the library: its status and its message (which names
// the file, option or value at fault).
//
// Test for a kind of failure with errors.Is and the sentinel values (ErrConfig,
// ErrWeights, ...), or read the status with errors.As:
//
//	var e *mlx.Error
//	if errors.As(err, &e) && e.Status == mlx.StatusWeights { ... }
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "mlx: " + e.Status.String()
	}
	return "mlx: " + e.Status.String() + ": " + e.Message
}

// Is reports whether target is the sentinel of e's status (a *Error without a message),
// so that errors.Is(err, ErrConfig) holds for every config error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Status == e.Status
}

// Sentinels for errors.Is, one per status.
var (
	ErrInvalidArgument error = &Error{Status: StatusInvalidArgument}
	ErrIO              error = &Error{Status: StatusIO}
	ErrConfig          error = &Error{Status: StatusConfig}
	ErrWeights         error = &Error{Status: StatusWeights}
	ErrTokenizer       error = &Error{Status: StatusTokenizer}
	ErrMLX             error = &Error{Status: StatusMLX}
	ErrInternal        error = &Error{Status: StatusInternal}
	ErrTemplate        error = &Error{Status: StatusTemplate}
	ErrCancelled       error = &Error{Status: StatusCancelled}
	ErrBackend         error = &Error{Status: StatusBackend}
	ErrUnsupported     error = &Error{Status: StatusUnsupported}
)

// ErrClosed is returned (and reported by Err) for a call on a closed Model or Session,
// and for a generation that Close stopped.
var ErrClosed = errors.New("mlx: use of a closed model or session")

func invalid(msg string) error { return &Error{Status: StatusInvalidArgument, Message: msg} }

// call runs one fallible C call and returns its error. The library's message is
// thread-local, so the call and the read of mlxrun_last_error run on one locked OS thread.
func call(f func() C.enum_mlxrun_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return lastError(f())
}

// lastError turns a status into an error; it must run on the thread that made the call.
func lastError(st C.enum_mlxrun_status) error {
	if st == C.MLXRUN_OK {
		return nil
	}
	return &Error{Status: Status(st), Message: C.GoString(C.mlxrun_last_error())}
}

// Version is the C library's version, e.g. "0.1.0".
func Version() string { return C.GoString(C.mlxrun_version()) }

// cString copies s into C memory that a frees; a string holding a NUL byte is refused
// (C would silently cut it there).
func (a *cArena) cString(s, what string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, invalid(what + " contains a NUL byte")
	}
	p := C.CString(s)
	a.ptrs = append(a.ptrs, ptr(p))
	return p, nil
}
