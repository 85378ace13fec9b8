/* Bad inputs at the C API: every entry point that takes a handle, given NULL; every
 * out-pointer, given NULL; versioned structs with struct_size 0, smaller than the first
 * version, and larger than this library knows (a caller built against a newer header).
 * Each must return an error status with mlxrun_last_error() naming the problem, never
 * crash; and the model handle used throughout keeps working.
 *
 * Usage: bad_inputs_test MODEL_DIR   (prints "PASSED <n>" when every check passed) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlxrun.h"

static int checks = 0, failures = 0;

#define CHECK(cond, ...)                                  \
    do {                                                  \
        checks++;                                         \
        if (!(cond)) {                                    \
            failures++;                                   \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                 \
            fprintf(stderr, "\n");                        \
        }                                                 \
    } while (0)

/* The call returned `want` and the thread's last error mentions `needle`. */
#define EXPECT(call, want, needle)                                                                   \
    do {                                                                                             \
        mlxrun_status got_ = (call);                                                                 \
        const char *msg_ = mlxrun_last_error();                                                      \
        CHECK(got_ == (want) && msg_ != NULL && strstr(msg_, (needle)) != NULL,                      \
              "%s: status %d (want %d), message '%s' (want '%s')", #call, (int)got_, (int)(want), \
              msg_ ? msg_ : "(null)", (needle));                                                     \
    } while (0)

#define INVALID MLXRUN_ERR_INVALID_ARGUMENT

static bool count_tokens(const mlxrun_token *tok, void *user_data) {
    (void)tok;
    (*(int *)user_data)++;
    return true;
}

/* A struct followed by bytes this library does not know: a newer caller's struct. */
#define NEWER(type)             \
    struct {                    \
        type known;             \
        unsigned char tail[64]; \
    }

static void null_handles(void) {
    const char *prompts[1] = {"Hi"};
    mlxrun_message msg[1] = {{"user", "Hi"}};
    mlxrun_classify_result cres[1];
    mlxrun_batch_result bres[1];
    mlxrun_model_info info = {.struct_size = sizeof info};
    mlxrun_metrics metrics = {.struct_size = sizeof metrics};
    mlxrun_attention_info ainfo = {.struct_size = sizeof ainfo};
    mlxrun_discovered_model dm = {.struct_size = sizeof dm};
    mlxrun_discovered_backend db = {.struct_size = sizeof db};
    mlxrun_session *sess = NULL;
    mlxrun_attention_snapshot *snap = NULL;
    int32_t ids[2] = {1, 2}, out_ids[4];
    size_t n = 0;
    char buf[64];
    const float *data = NULL;
    uint64_t trainable = 0;
    float loss = 0;
    mlxrun_finish_reason fr;

    EXPECT(mlxrun_model_get_info(NULL, &info), INVALID, "model");
    EXPECT(mlxrun_model_metrics(NULL, &metrics), INVALID, "model");
    EXPECT(mlxrun_cancel(NULL), INVALID, "model");
    EXPECT(mlxrun_tokenize(NULL, "Hi", true, out_ids, 4, &n), INVALID, "model");
    EXPECT(mlxrun_detokenize(NULL, ids, 2, false, buf, sizeof buf, &n), INVALID, "model");
    EXPECT(mlxrun_generate(NULL, "Hi", NULL, NULL, NULL, &fr), INVALID, "model");
    EXPECT(mlxrun_generate_tokens(NULL, ids, 2, NULL, NULL, NULL, &fr), INVALID, "model");
    EXPECT(mlxrun_chat(NULL, msg, 1, NULL, NULL, NULL, NULL, &fr), INVALID, "model");
    EXPECT(mlxrun_apply_chat_template(NULL, msg, 1, NULL, buf, sizeof buf, &n), INVALID, "model");
    EXPECT(mlxrun_session_new(NULL, NULL, &sess), INVALID, "model");
    EXPECT(mlxrun_classify(NULL, prompts, 1, NULL, NULL, cres, NULL), INVALID, "model");
    EXPECT(mlxrun_batch_generate(NULL, prompts, 1, NULL, NULL, NULL, NULL, bres), INVALID, "model");
    EXPECT(mlxrun_inspect_attention(NULL, "Hi", NULL, &snap), INVALID, "model");
    EXPECT(mlxrun_model_apply_lora(NULL, NULL, &trainable), INVALID, "model");
    EXPECT(mlxrun_model_train(NULL, "/tmp", NULL, NULL, NULL), INVALID, "model");
    EXPECT(mlxrun_model_evaluate(NULL, "/tmp/x.jsonl", NULL, 1, &loss), INVALID, "model");
    EXPECT(mlxrun_model_save_adapter(NULL, "/tmp/x"), INVALID, "model");
    EXPECT(mlxrun_model_load_adapter(NULL, "/tmp/x"), INVALID, "model");
    EXPECT(mlxrun_model_remove_adapter(NULL), INVALID, "model");

    EXPECT(mlxrun_session_add_message(NULL, "user", "Hi"), INVALID, "session");
    EXPECT(mlxrun_session_send(NULL, "user", "Hi", NULL, NULL, NULL, &fr), INVALID, "session");
    EXPECT(mlxrun_session_reset(NULL), INVALID, "session");
    CHECK(mlxrun_session_message_count(NULL) == 0, "message count of NULL");

    EXPECT(mlxrun_attention_snapshot_get_info(NULL, &ainfo), INVALID, "snapshot");
    EXPECT(mlxrun_attention_snapshot_keys(NULL, 0, 0, &data, &n), INVALID, "snapshot");
    EXPECT(mlxrun_attention_snapshot_queries(NULL, 0, 0, &data, &n), INVALID, "snapshot");
    EXPECT(mlxrun_discovered_list_get(NULL, 0, &dm), INVALID, "list");
    EXPECT(mlxrun_discovered_list_get_backend(NULL, 0, 0, &db), INVALID, "list");

    /* The frees and counts accept NULL. */
    mlxrun_model_free(NULL);
    mlxrun_session_free(NULL);
    mlxrun_attention_snapshot_free(NULL);
    mlxrun_discovered_list_free(NULL);
    CHECK(mlxrun_discovered_list_count(NULL) == 0, "list count of NULL");
    CHECK(mlxrun_model_backend(NULL) == NULL, "backend of NULL");
}

static void null_strings_and_outputs(const char *dir) {
    mlxrun_model *m = NULL;
    bool ok;
    size_t n;
    uint64_t fused;
    mlxrun_discovered_list *list = NULL;
    EXPECT(mlxrun_model_load(NULL, NULL, &m), INVALID, "path");
    EXPECT(mlxrun_model_load(dir, NULL, NULL), INVALID, "out");
    EXPECT(mlxrun_discover(NULL, NULL, &list), INVALID, "dir");
    EXPECT(mlxrun_discover(dir, NULL, NULL), INVALID, "out");
    EXPECT(mlxrun_get_device_info(NULL), INVALID, "out");
    EXPECT(mlxrun_backend_available(NULL, NULL, NULL, &ok, NULL, 0, &n), INVALID, "name");
    EXPECT(mlxrun_backend_available("native", NULL, NULL, NULL, NULL, 0, &n), INVALID, "available");
    EXPECT(mlxrun_fuse_adapter(NULL, "/tmp/a", "/tmp/b", false, &fused), INVALID, "model_path");
    EXPECT(mlxrun_fuse_adapter(dir, NULL, "/tmp/b", false, &fused), INVALID, "adapter_dir");
    EXPECT(mlxrun_fuse_adapter(dir, "/tmp/a", NULL, false, &fused), INVALID, "save_dir");
    /* A path that is a file, not a folder. */
    char file[4096];
    snprintf(file, sizeof file, "%s/config.json", dir);
    EXPECT(mlxrun_model_load(file, NULL, &m), MLXRUN_ERR_CONFIG, "not a folder");
    CHECK(m == NULL, "no handle after a failed load");
    /* Distributed loads: an unknown backend, and the ring backend without its environment
       (this program runs without MLX_RANK / MLX_HOSTFILE). */
    mlxrun_load_params dp = mlxrun_load_default_params();
    dp.distributed_backend = "carrier-pigeon";
    EXPECT(mlxrun_model_load(dir, &dp, &m), INVALID, "carrier-pigeon");
    dp.distributed_backend = "ring";
    EXPECT(mlxrun_model_load(dir, &dp, &m), INVALID, "MLX_RANK");
    CHECK(m == NULL, "no handle after a failed distributed load");
    EXPECT(mlxrun_model_rank(NULL, NULL, NULL), INVALID, "model");
    CHECK(!mlxrun_distributed_failed(), "no group has failed");
}

static void with_a_model(mlxrun_model *m) {
    int32_t rank = -1, size = -1;
    CHECK(mlxrun_model_rank(m, &rank, &size) == MLXRUN_OK && rank == 0 && size == 1, "a whole model's rank: %d of %d",
          rank, size);
    mlxrun_finish_reason fr;
    size_t n;
    int32_t ids[2] = {1, 2};
    char buf[64];
    uint64_t trainable;
    float loss;
    mlxrun_message msg[1] = {{"user", "Hi"}};
    mlxrun_message no_role[1] = {{NULL, "Hi"}};
    const char *prompts[2] = {"Hi", NULL};
    mlxrun_classify_result cres[2];
    mlxrun_batch_result bres[2];
    mlxrun_session *sess = NULL;
    mlxrun_attention_snapshot *snap = NULL;

    /* NULL out-pointers and inputs with a good handle. */
    EXPECT(mlxrun_model_get_info(m, NULL), INVALID, "out");
    EXPECT(mlxrun_model_metrics(m, NULL), INVALID, "out");
    EXPECT(mlxrun_tokenize(m, NULL, true, NULL, 0, &n), INVALID, "text");
    EXPECT(mlxrun_tokenize(m, "Hi", true, NULL, 0, NULL), INVALID, "n_tokens");
    EXPECT(mlxrun_detokenize(m, NULL, 2, false, buf, sizeof buf, &n), INVALID, "tokens");
    EXPECT(mlxrun_detokenize(m, ids, 2, false, buf, sizeof buf, NULL), INVALID, "needed");
    EXPECT(mlxrun_generate(m, NULL, NULL, NULL, NULL, &fr), INVALID, "prompt");
    EXPECT(mlxrun_generate_tokens(m, NULL, 2, NULL, NULL, NULL, &fr), INVALID, "tokens");
    EXPECT(mlxrun_chat(m, NULL, 1, NULL, NULL, NULL, NULL, &fr), INVALID, "messages");
    EXPECT(mlxrun_chat(m, no_role, 1, NULL, NULL, NULL, NULL, &fr), INVALID, "messages[0].role");
    EXPECT(mlxrun_apply_chat_template(m, msg, 1, NULL, buf, sizeof buf, NULL), INVALID, "needed");
    EXPECT(mlxrun_session_new(m, NULL, NULL), INVALID, "out");
    EXPECT(mlxrun_classify(m, prompts, 1, NULL, NULL, NULL, NULL), INVALID, "results");
    EXPECT(mlxrun_classify(m, prompts, 2, NULL, NULL, cres, NULL), INVALID, "prompts[1]");
    EXPECT(mlxrun_batch_generate(m, prompts, 1, NULL, NULL, NULL, NULL, NULL), INVALID, "results");
    EXPECT(mlxrun_batch_generate(m, prompts, 2, NULL, NULL, NULL, NULL, bres), INVALID, "prompts[1]");
    EXPECT(mlxrun_batch_generate(m, prompts, 0, NULL, NULL, NULL, NULL, bres), INVALID, "n_prompts");
    EXPECT(mlxrun_inspect_attention(m, "Hi", NULL, NULL), INVALID, "out");
    EXPECT(mlxrun_model_train(m, NULL, NULL, NULL, NULL), INVALID, "data_dir");
    EXPECT(mlxrun_model_evaluate(m, NULL, NULL, 1, &loss), INVALID, "file");
    EXPECT(mlxrun_model_save_adapter(m, NULL), INVALID, "dir");
    EXPECT(mlxrun_model_load_adapter(m, NULL), INVALID, "dir");
    (void)trainable;

    CHECK(mlxrun_session_new(m, NULL, &sess) == MLXRUN_OK, "session: %s", mlxrun_last_error());
    EXPECT(mlxrun_session_add_message(sess, NULL, "Hi"), INVALID, "role");
    EXPECT(mlxrun_session_add_message(sess, "user", NULL), INVALID, "content");
    EXPECT(mlxrun_session_send(sess, "user", NULL, NULL, NULL, NULL, &fr), INVALID, "content");
    mlxrun_session_free(sess);

    CHECK(mlxrun_inspect_attention(m, "Hi there", NULL, &snap) == MLXRUN_OK, "inspect: %s", mlxrun_last_error());
    EXPECT(mlxrun_attention_snapshot_get_info(snap, NULL), INVALID, "out");
    EXPECT(mlxrun_attention_snapshot_keys(snap, 0, 0, NULL, &n), INVALID, "data");
    EXPECT(mlxrun_attention_snapshot_queries(snap, 0, 0, NULL, NULL), INVALID, "data");
    EXPECT(mlxrun_attention_snapshot_keys(snap, 1000, 0, (const float **)&buf, &n), INVALID, "layer");
    mlxrun_attention_snapshot_free(snap);

    /* Invalid UTF-8 in every string input that is text. */
    const char bad_utf8[] = {'H', (char)0xff, 'i', 0};
    mlxrun_message bad_msg[1] = {{"user", bad_utf8}};
    EXPECT(mlxrun_generate(m, bad_utf8, NULL, NULL, NULL, &fr), INVALID, "UTF-8");
    EXPECT(mlxrun_tokenize(m, bad_utf8, true, NULL, 0, &n), INVALID, "UTF-8");
    EXPECT(mlxrun_chat(m, bad_msg, 1, NULL, NULL, NULL, NULL, &fr), INVALID, "UTF-8");
    const char *bad_prompts[1] = {bad_utf8};
    EXPECT(mlxrun_classify(m, bad_prompts, 1, NULL, NULL, cres, NULL), INVALID, "UTF-8");

    /* The empty prompt: this tokenizer adds no BOS, so it has no tokens. */
    EXPECT(mlxrun_generate(m, "", NULL, NULL, NULL, &fr), INVALID, "no tokens");
    EXPECT(mlxrun_generate_tokens(m, ids, 0, NULL, NULL, NULL, &fr), INVALID, "no tokens");

    /* Sampler values out of range, each named. */
    struct {
        const char *field;
        mlxrun_generate_params p;
    } bad[8];
    for (int i = 0; i < 8; i++) bad[i].p = mlxrun_generate_default_params();
    bad[0].field = "temperature"; bad[0].p.temperature = -1.0f;
    bad[1].field = "temperature"; bad[1].p.temperature = NAN;
    bad[2].field = "top_p";       bad[2].p.top_p = 0.0f;
    bad[3].field = "top_p";       bad[3].p.top_p = 1.5f;
    bad[4].field = "top_k";       bad[4].p.top_k = -3;
    bad[5].field = "min_p";       bad[5].p.min_p = 1.0f;
    bad[6].field = "repetition_penalty"; bad[6].p.repetition_penalty = 0.0f;
    bad[7].field = "prefill_step_size";  bad[7].p.prefill_step_size = 0;
    for (int i = 0; i < 8; i++) {
        EXPECT(mlxrun_generate(m, "Hi", &bad[i].p, NULL, NULL, &fr), INVALID, bad[i].field);
        EXPECT(mlxrun_classify(m, prompts, 1, &bad[i].p, NULL, cres, NULL), INVALID, bad[i].field);
    }
    /* max_tokens is unsigned; 0 generates nothing. */
    mlxrun_generate_params zero = mlxrun_generate_default_params();
    zero.max_tokens = 0;
    int count = 0;
    CHECK(mlxrun_generate(m, "Hi", &zero, count_tokens, &count, &fr) == MLXRUN_OK && count == 0 &&
              fr == MLXRUN_FINISH_LENGTH,
          "max_tokens 0: %s", mlxrun_last_error());

    /* Versioned structs: struct_size 0, one short of the first version, and larger. */
    mlxrun_generate_params gp = mlxrun_generate_default_params();
    gp.struct_size = 0;
    EXPECT(mlxrun_generate(m, "Hi", &gp, NULL, NULL, &fr), INVALID, "struct_size is 0");
    gp.struct_size = 8;
    EXPECT(mlxrun_generate(m, "Hi", &gp, NULL, NULL, &fr), INVALID, "struct_size is 8");
    NEWER(mlxrun_generate_params) gnew;
    memset(&gnew, 0xab, sizeof gnew);
    gnew.known = mlxrun_generate_default_params();
    gnew.known.max_tokens = 2;
    gnew.known.struct_size = sizeof gnew;
    count = 0;
    CHECK(mlxrun_generate(m, "Hi", &gnew.known, count_tokens, &count, &fr) == MLXRUN_OK && count > 0,
          "a newer generate_params: %s", mlxrun_last_error());

    mlxrun_chat_params cp = mlxrun_chat_default_params();
    cp.struct_size = 0;
    EXPECT(mlxrun_chat(m, msg, 1, &cp, &gnew.known, NULL, NULL, &fr), INVALID, "struct_size");
    EXPECT(mlxrun_session_new(m, &cp, &sess), INVALID, "struct_size");
    NEWER(mlxrun_chat_params) cnew;
    memset(&cnew, 0xab, sizeof cnew);
    cnew.known = mlxrun_chat_default_params();
    cnew.known.struct_size = sizeof cnew;
    CHECK(mlxrun_chat(m, msg, 1, &cnew.known, &gnew.known, NULL, NULL, &fr) == MLXRUN_OK, "a newer chat_params: %s",
          mlxrun_last_error());

    mlxrun_batch_params bp = mlxrun_batch_default_params();
    bp.struct_size = 0;
    EXPECT(mlxrun_batch_generate(m, prompts, 1, NULL, &bp, NULL, NULL, bres), INVALID, "struct_size");
    NEWER(mlxrun_batch_params) bnew;
    memset(&bnew, 0xab, sizeof bnew);
    bnew.known = mlxrun_batch_default_params();
    bnew.known.struct_size = sizeof bnew;
    CHECK(mlxrun_classify(m, prompts, 1, NULL, &bnew.known, cres, NULL) == MLXRUN_OK && cres[0].status == MLXRUN_OK,
          "a newer batch_params: %s", mlxrun_last_error());
    /* batch size 0 is automatic. */
    bp = mlxrun_batch_default_params();
    bp.max_batch_size = 0;
    CHECK(mlxrun_classify(m, prompts, 1, NULL, &bp, cres, NULL) == MLXRUN_OK, "batch size 0: %s", mlxrun_last_error());

    mlxrun_lora_params lp = mlxrun_lora_default_params();
    lp.struct_size = 0;
    EXPECT(mlxrun_model_apply_lora(m, &lp, &trainable), INVALID, "struct_size");
    mlxrun_train_params tp = mlxrun_train_default_params();
    tp.struct_size = 0;
    EXPECT(mlxrun_model_evaluate(m, "/nonexistent.jsonl", &tp, 1, &loss), INVALID, "struct_size");

    /* Output structs: too small is an error; larger gets what this library knows. */
    mlxrun_model_info info = {.struct_size = 0};
    EXPECT(mlxrun_model_get_info(m, &info), INVALID, "struct_size is 0");
    NEWER(mlxrun_model_info) inew;
    memset(&inew, 0, sizeof inew);
    inew.known.struct_size = sizeof inew;
    CHECK(mlxrun_model_get_info(m, &inew.known) == MLXRUN_OK && inew.known.struct_size == sizeof(mlxrun_model_info) &&
              inew.tail[0] == 0 && inew.known.num_layers > 0,
          "a newer model_info: %s", mlxrun_last_error());
    mlxrun_metrics met = {.struct_size = 4};
    EXPECT(mlxrun_model_metrics(m, &met), INVALID, "struct_size is 4");
    mlxrun_device_info dev = {.struct_size = 0};
    EXPECT(mlxrun_get_device_info(&dev), INVALID, "struct_size is 0");
    NEWER(mlxrun_device_info) dnew;
    memset(&dnew, 0, sizeof dnew);
    dnew.known.struct_size = sizeof dnew;
    CHECK(mlxrun_get_device_info(&dnew.known) == MLXRUN_OK && dnew.tail[0] == 0, "a newer device_info: %s",
          mlxrun_last_error());

    /* Load and discover params too. */
    mlxrun_load_params ld = mlxrun_load_default_params();
    ld.struct_size = 0;
    mlxrun_model *m2 = NULL;
    EXPECT(mlxrun_model_load("/nonexistent", &ld, &m2), INVALID, "struct_size");
    mlxrun_discover_params dp = mlxrun_discover_default_params();
    dp.struct_size = 2;
    mlxrun_discovered_list *list = NULL;
    EXPECT(mlxrun_discover("/tmp", &dp, &list), INVALID, "struct_size");
    CHECK(m2 == NULL && list == NULL, "no handles on failure");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    null_handles();
    null_strings_and_outputs(argv[1]);
    mlxrun_model *m = NULL;
    if (mlxrun_model_load(argv[1], NULL, &m) != MLXRUN_OK) {
        fprintf(stderr, "load %s: %s\n", argv[1], mlxrun_last_error());
        return 1;
    }
    with_a_model(m);
    /* The handle still works after all of that. */
    mlxrun_generate_params gp = mlxrun_generate_default_params();
    gp.max_tokens = 4;
    int count = 0;
    mlxrun_finish_reason fr;
    CHECK(mlxrun_generate(m, "The capital of France is", &gp, count_tokens, &count, &fr) == MLXRUN_OK && count == 4,
          "the model still generates: %s", mlxrun_last_error());
    mlxrun_model_free(m);
    if (failures) {
        fprintf(stderr, "%d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("PASSED %d\n", checks);
    return 0;
}
