/*
 * The whole life of a short-lived program that uses the library, ended in one of four
 * ways; the process must then exit promptly. tests/clean_exit.rs and scripts/exit_loop.sh
 * run it many times in a row, each under a timeout, to catch a hang (or a crash) in the
 * exit handlers of the libraries it loads: OpenBLAS's, which joins its worker threads, and
 * MLX's static destructors.
 *
 *   exit_after_generate MODEL [MODE [MAX_TOKENS]]
 *
 * MODE free (the default): load, generate MAX_TOKENS (8) greedy tokens, free the model,
 *      return from main.
 *      keep: the same without freeing the model.
 *      busy: generate on a second thread and return from main as soon as the first token
 *      arrives, while that thread is still generating (MAX_TOKENS defaults to 10000), as a
 *      program that exits without stopping its work does.
 *      atexit: generate, return from main, and free the model in an exit handler that runs
 *      after the library's own (registered before it), as a global object's destructor
 *      would.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlxrun.h"

static const char *PROMPT = "The capital of France is";

typedef struct {
    mlxrun_model *model;
    uint32_t max_tokens;
    pthread_mutex_t lock;
    pthread_cond_t first_token;
    unsigned tokens;
} job;

static bool count_token(const mlxrun_token *token, void *user_data) {
    (void)token;
    job *j = user_data;
    pthread_mutex_lock(&j->lock);
    j->tokens++;
    pthread_cond_signal(&j->first_token);
    pthread_mutex_unlock(&j->lock);
    return true;
}

static int generate(job *j) {
    mlxrun_generate_params params = mlxrun_generate_default_params();
    params.max_tokens = j->max_tokens;
    params.temperature = 0.0f;
    mlxrun_finish_reason why;
    if (mlxrun_generate(j->model, PROMPT, &params, count_token, j, &why) != MLXRUN_OK) {
        fprintf(stderr, "generate failed: %s\n", mlxrun_last_error());
        return 1;
    }
    return 0;
}

static void *generate_thread(void *arg) {
    generate(arg);
    return NULL;
}

static job g_job;

static void free_at_exit(void) {
    mlxrun_model_free(g_job.model);
    printf("freed at exit\n");
}

int main(int argc, char **argv) {
    const char *mode = argc > 2 ? argv[2] : "free";
    bool busy = strcmp(mode, "busy") == 0, at_exit = strcmp(mode, "atexit") == 0;
    if (argc < 2 || (!busy && !at_exit && strcmp(mode, "free") != 0 && strcmp(mode, "keep") != 0)) {
        fprintf(stderr, "usage: %s MODEL [free|keep|busy|atexit [MAX_TOKENS]]\n", argv[0]);
        return 2;
    }
    /* Static: the generating thread or the exit handler still uses it after main returned. */
    job *j = &g_job;
    j->max_tokens = argc > 3 ? (uint32_t)atoi(argv[3]) : busy ? 10000 : 8;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->first_token, NULL);
    if (at_exit) atexit(free_at_exit); /* before the library's first call registers its own */
    if (mlxrun_model_load(argv[1], NULL, &j->model) != MLXRUN_OK) {
        fprintf(stderr, "load failed: %s\n", mlxrun_last_error());
        return 1;
    }
    if (busy) {
        pthread_t t;
        if (pthread_create(&t, NULL, generate_thread, j) != 0) return 1;
        pthread_mutex_lock(&j->lock);
        while (j->tokens == 0) pthread_cond_wait(&j->first_token, &j->lock);
        pthread_mutex_unlock(&j->lock);
        printf("leaving while generating\n");
        fflush(stdout);
        return 0; /* the generating thread, the model and MLX's stream are all still busy */
    }
    if (generate(j) != 0) {
        mlxrun_model_free(j->model);
        return 1;
    }
    printf("%u tokens\n", j->tokens);
    fflush(stdout);
    if (strcmp(mode, "free") == 0) mlxrun_model_free(j->model);
    return 0;
}
