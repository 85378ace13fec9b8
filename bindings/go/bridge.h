/*
 * C side of the Go binding: trampolines that pass a runtime/cgo.Handle (an integer, never
 * a Go pointer) as the callback's user_data, and route each token to the exported Go
 * function mlxrunGoToken (each training report to mlxrunGoTrainProgress). Built by cgo
 * with the package's pkg-config flags.
 */
#ifndef MLXRUN_GO_BRIDGE_H
#define MLXRUN_GO_BRIDGE_H

#include <stdint.h>
#include <stdlib.h>

#include <mlxrun.h>

enum mlxrun_status mlxrun_go_generate(mlxrun_model *model, const char *prompt, const mlxrun_generate_params *params,
                                 uintptr_t handle, enum mlxrun_finish_reason *finish);

enum mlxrun_status mlxrun_go_chat(mlxrun_model *model, const mlxrun_message *messages, size_t n_messages,
                             const mlxrun_chat_params *chat_params, const mlxrun_generate_params *params,
                             uintptr_t handle, enum mlxrun_finish_reason *finish);

enum mlxrun_status mlxrun_go_session_send(mlxrun_session *session, const char *role, const char *content,
                                     const mlxrun_generate_params *params, uintptr_t handle,
                                     enum mlxrun_finish_reason *finish);

enum mlxrun_status mlxrun_go_batch_generate(mlxrun_model *model, const char *const *prompts, size_t n_prompts,
                                           const mlxrun_generate_params *params, const mlxrun_batch_params *batch,
                                           uintptr_t handle, mlxrun_batch_result *results);

enum mlxrun_status mlxrun_go_train(mlxrun_model *model, const char *data_dir, const mlxrun_train_params *params,
                                  uintptr_t handle);

#endif
