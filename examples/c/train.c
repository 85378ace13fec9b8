/*
 * Fine-tunes a LoRA adapter on a data folder (train.jsonl, valid.jsonl in mlx-lm's
 * formats), prints each report, writes the adapter, then loads the model again with the
 * adapter and answers a prompt with it.
 *
 *   cc -std=c11 train.c $(pkg-config --cflags --libs mlxrun) -o train
 *   ./train MODEL DATA_DIR ADAPTER_DIR ITERS "What colour is the sky on Zorbia?"
 */
#include <stdio.h>
#include <stdlib.h>

#include "mlxrun.h"

static bool report(const mlxrun_train_progress *p, void *user_data) {
    int *reports = user_data;
    switch (p->kind) {
    case MLXRUN_PROGRESS_TRAIN:
        printf("step %u: train loss %.4f, lr %.2e, %.0f tok/s, peak %.1f MB\n", p->iteration, p->train_loss,
               p->learning_rate, p->tokens_per_second, p->peak_memory / 1e6);
        ++*reports;
        break;
    case MLXRUN_PROGRESS_VAL:
        printf("after %u steps: validation loss %.4f\n", p->iteration, p->val_loss);
        break;
    case MLXRUN_PROGRESS_SAVED:
        printf("saved %s\n", p->message);
        break;
    default:
        fprintf(stderr, "warning: %s\n", p->message);
    }
    return true; /* false cancels */
}

static bool print_token(const mlxrun_token *t, void *user_data) {
    (void)user_data;
    fwrite(t->text, 1, t->text_len, stdout);
    return true;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL DATA_DIR ADAPTER_DIR ITERS PROMPT\n", argv[0]);
        return 2;
    }
    mlxrun_model *model = NULL;
    if (mlxrun_model_load(argv[1], NULL, &model) != MLXRUN_OK) goto fail;

    mlxrun_lora_params lora = mlxrun_lora_default_params(); /* rank 8 on q_proj, v_proj */
    lora.rank = 4;
    uint64_t trainable = 0;
    if (mlxrun_model_apply_lora(model, &lora, &trainable) != MLXRUN_OK) goto fail;
    printf("%llu trainable parameters\n", (unsigned long long)trainable);

    mlxrun_train_params params = mlxrun_train_default_params(); /* mlx-lm's defaults */
    params.iters = (uint32_t)atoi(argv[4]);
    params.learning_rate = 1e-3f;
    params.steps_per_report = 1;
    params.steps_per_eval = params.iters;
    params.mask_prompt = true;
    params.adapter_path = argv[3];
    int reports = 0;
    if (mlxrun_model_train(model, argv[2], &params, report, &reports) != MLXRUN_OK) goto fail;
    mlxrun_model_free(model);
    model = NULL;

    /* The adapter folder loads with the model (mlx_lm.generate --adapter-path reads it too). */
    mlxrun_load_params load = mlxrun_load_default_params();
    load.adapter_path = argv[3];
    if (mlxrun_model_load(argv[1], &load, &model) != MLXRUN_OK) goto fail;
    mlxrun_generate_params gen = mlxrun_generate_default_params();
    gen.max_tokens = 16;
    if (mlxrun_generate(model, argv[5], &gen, print_token, NULL, NULL) != MLXRUN_OK) goto fail;
    printf("\n%d reports\n", reports);
    mlxrun_model_free(model);
    return reports == (int)params.iters ? 0 : 1;

fail:
    fprintf(stderr, "error: %s\n", mlxrun_last_error());
    mlxrun_model_free(model);
    return 1;
}
