/*
 * Streams a continuation of a prompt from a model folder, then prints the metrics.
 *
 *   cc -std=c11 generate.c $(pkg-config --cflags --libs mlxrun) -o generate
 *   ./generate MODEL_DIR "The capital of France is" [MAX_TOKENS]
 */
#include <stdio.h>
#include <stdlib.h>

#include "mlxrun.h"

static bool print_token(const mlxrun_token *token, void *user_data) {
    (void)user_data;
    fwrite(token->text, 1, token->text_len, stdout);
    fflush(stdout);
    return true; /* false would stop generation */
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR PROMPT [MAX_TOKENS]\n", argv[0]);
        return 2;
    }
    mlxrun_model *model = NULL;
    if (mlxrun_model_load(argv[1], NULL, &model) != MLXRUN_OK) {
        fprintf(stderr, "load failed: %s\n", mlxrun_last_error());
        return 1;
    }
    mlxrun_generate_params params = mlxrun_generate_default_params();
    if (argc > 3) params.max_tokens = (uint32_t)atoi(argv[3]);
    mlxrun_finish_reason why;
    if (mlxrun_generate(model, argv[2], &params, print_token, NULL, &why) != MLXRUN_OK) {
        fprintf(stderr, "\ngenerate failed: %s\n", mlxrun_last_error());
        mlxrun_model_free(model);
        return 1;
    }
    mlxrun_metrics m;
    m.struct_size = sizeof(m);
    mlxrun_model_metrics(model, &m);
    fprintf(stderr, "\nprompt %llu tokens at %.1f tok/s, generated %llu at %.1f tok/s, peak %.1f MiB\n",
            (unsigned long long)m.prompt_tokens, m.prefill_tokens_per_second,
            (unsigned long long)m.generated_tokens, m.decode_tokens_per_second, m.peak_memory / 1048576.0);
    mlxrun_model_free(model);
    return 0;
}
