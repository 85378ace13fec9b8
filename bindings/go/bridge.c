#include "bridge.h"

#include "_cgo_export.h"

static bool on_token(const mlxrun_token *token, void *user_data) {
    return mlxrunGoToken((mlxrun_token *)token, (uintptr_t)user_data);
}

enum mlxrun_status mlxrun_go_generate(mlxrun_model *model, const char *prompt, const mlxrun_generate_params *params,
                                 uintptr_t handle, enum mlxrun_finish_reason *finish) {
    return mlxrun_generate(model, prompt, params, on_token, (void *)handle, finish);
}

enum mlxrun_status mlxrun_go_chat(mlxrun_model *model, const mlxrun_message *messages, size_t n_messages,
                             const mlxrun_chat_params *chat_params, const mlxrun_generate_params *params,
                             uintptr_t handle, enum mlxrun_finish_reason *finish) {
    return mlxrun_chat(model, messages, n_messages, chat_params, params, on_token, (void *)handle, finish);
}

enum mlxrun_status mlxrun_go_session_send(mlxrun_session *session, const char *role, const char *content,
                                     const mlxrun_generate_params *params, uintptr_t handle,
                                     enum mlxrun_finish_reason *finish) {
    return mlxrun_session_send(session, role, content, params, on_token, (void *)handle, finish);
}

static bool on_row_token(size_t index, const mlxrun_token *token, void *user_data) {
    return mlxrunGoRowToken(index, (mlxrun_token *)token, (uintptr_t)user_data);
}

enum mlxrun_status mlxrun_go_batch_generate(mlxrun_model *model, const char *const *prompts, size_t n_prompts,
                                           const mlxrun_generate_params *params, const mlxrun_batch_params *batch,
                                           uintptr_t handle, mlxrun_batch_result *results) {
    return mlxrun_batch_generate(model, prompts, n_prompts, params, batch, on_row_token, (void *)handle, results);
}

static bool on_train_progress(const mlxrun_train_progress *progress, void *user_data) {
    return mlxrunGoTrainProgress((mlxrun_train_progress *)progress, (uintptr_t)user_data);
}

enum mlxrun_status mlxrun_go_train(mlxrun_model *model, const char *data_dir, const mlxrun_train_params *params,
                                  uintptr_t handle) {
    return mlxrun_model_train(model, data_dir, params, on_train_progress, (void *)handle);
}
