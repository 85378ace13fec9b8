/*
 * Asks a model one question through its chat template and prints the streamed reply.
 * Exits 0 only if the reply contains EXPECTED (when given), so it doubles as a check.
 *
 *   cc -std=c11 chat.c $(pkg-config --cflags --libs mlxrun) -o chat
 *   ./chat SmolLM2-135M-Instruct.Q4_1.gguf "What is the capital of France?" Paris
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlxrun.h"

/* The reply collected from the streamed pieces (each piece is whole UTF-8 characters). */
typedef struct {
    char *text;
    size_t len;
} reply;

static bool collect(const mlxrun_token *token, void *user_data) {
    reply *r = user_data;
    char *grown = realloc(r->text, r->len + token->text_len + 1);
    if (grown == NULL) return false; /* stops generation; checked below */
    r->text = grown;
    memcpy(r->text + r->len, token->text, token->text_len);
    r->len += token->text_len;
    r->text[r->len] = '\0';
    fwrite(token->text, 1, token->text_len, stdout);
    fflush(stdout);
    return true;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL QUESTION [EXPECTED]\n", argv[0]);
        return 2;
    }
    mlxrun_model *model = NULL;
    if (mlxrun_model_load(argv[1], NULL, &model) != MLXRUN_OK) {
        fprintf(stderr, "load failed: %s\n", mlxrun_last_error());
        return 1;
    }
    mlxrun_message messages[] = {{.role = "user", .content = argv[2]}};
    mlxrun_generate_params params = mlxrun_generate_default_params(); /* greedy */
    params.max_tokens = 64;
    reply r = {NULL, 0};
    mlxrun_finish_reason why;
    mlxrun_status status = mlxrun_chat(model, messages, 1, NULL, &params, collect, &r, &why);
    int code = 0;
    if (status != MLXRUN_OK) {
        fprintf(stderr, "\nchat failed: %s\n", mlxrun_last_error());
        code = 1;
    } else if (why == MLXRUN_FINISH_CALLBACK) {
        fprintf(stderr, "\nout of memory collecting the reply\n");
        code = 1;
    } else if (argc > 3 && (r.text == NULL || strstr(r.text, argv[3]) == NULL)) {
        fprintf(stderr, "\nthe reply does not contain \"%s\"\n", argv[3]);
        code = 1;
    }
    printf("\n");
    free(r.text);
    mlxrun_model_free(model);
    return code;
}
