/*
 * The C API from many threads: generations on one model and on several models at once,
 * with mlxrun_cancel racing them and another model loaded and freed beside them, then the
 * memory limit refusing a load and the process serving on. tests/c_api.rs runs it as
 * built normally and built with -fsanitize=address.
 *
 * usage: concurrency_test MODEL_A MODEL_B MODEL_C
 *
 * Greedy output of every completed generation must equal a serial run's; a cancelled one
 * must be a prefix of it. A deadlock ends the program by SIGALRM (exit status 142 from the
 * shell's view; the test reports the signal). Prints "PASSED <n>" at the end.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mlxrun.h"

#define N_MODELS 2
#define N_PROMPTS 3
#define MAX_TOKENS 24
#define N_WORKERS 6
#define ROUNDS 4
#define DEADLINE_S 240

static const char *PROMPTS[N_PROMPTS] = {"The capital of France is", "Once upon a time", "def fibonacci(n):"};

static int checks = 0;
static pthread_mutex_t check_mu = PTHREAD_MUTEX_INITIALIZER;

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        pthread_mutex_lock(&check_mu);                                                   \
        checks++;                                                                        \
        pthread_mutex_unlock(&check_mu);                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                                \
            fprintf(stderr, " (last error: %s)\n", mlxrun_last_error());                 \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

typedef struct {
    int ids[MAX_TOKENS + 1];
    int n;
} ids_t;

static bool collect(const mlxrun_token *tok, void *user_data) {
    ids_t *c = (ids_t *)user_data;
    if (tok->id >= 0 && c->n <= MAX_TOKENS) c->ids[c->n++] = tok->id;
    return true;
}

static mlxrun_generate_params greedy(void) {
    mlxrun_generate_params p = mlxrun_generate_default_params();
    p.max_tokens = MAX_TOKENS;
    p.ignore_eos = true;
    return p;
}

static mlxrun_status generate(mlxrun_model *m, const char *prompt, ids_t *out, mlxrun_finish_reason *finish) {
    mlxrun_generate_params p = greedy();
    memset(out, 0, sizeof *out);
    return mlxrun_generate(m, prompt, &p, collect, out, finish);
}

static mlxrun_model *models[N_MODELS];
static ids_t reference[N_MODELS][N_PROMPTS];
static const char *cycled_path;
static volatile int stop_racers = 0;
static int cancelled_count = 0, completed_count = 0, cycles = 0;

static void *worker(void *arg) {
    int w = (int)(size_t)arg;
    for (int r = 0; r < ROUNDS; r++) {
        /* The first half of the workers share model 0; the rest alternate. */
        int k = w < N_WORKERS / 2 ? 0 : (w + r) % N_MODELS;
        int p = (w * 5 + r) % N_PROMPTS;
        ids_t got;
        mlxrun_finish_reason finish;
        mlxrun_status st = generate(models[k], PROMPTS[p], &got, &finish);
        CHECK(st == MLXRUN_OK, "worker %d round %d: status %d", w, r, (int)st);
        const ids_t *want = &reference[k][p];
        CHECK(got.n <= want->n && memcmp(got.ids, want->ids, sizeof(int) * (size_t)got.n) == 0,
              "worker %d: model %d prompt %d: %d tokens, not a prefix of the serial run", w, k, p, got.n);
        CHECK(k == 1 || finish == MLXRUN_FINISH_LENGTH, "worker %d: model 0 was never cancelled, finish %d", w, (int)finish);
        if (finish == MLXRUN_FINISH_CANCELLED) {
            __atomic_add_fetch(&cancelled_count, 1, __ATOMIC_RELAXED);
        } else {
            CHECK(finish == MLXRUN_FINISH_LENGTH && got.n == want->n, "worker %d: finish %d after %d tokens", w,
                  (int)finish, got.n);
            __atomic_add_fetch(&completed_count, 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

/* Cancels model 1 at staggered intervals, without waiting for its generations; model 0's
 * generations are never cancelled, so they must all run to their length. */
static void *canceller(void *arg) {
    (void)arg;
    for (unsigned n = 0; !__atomic_load_n(&stop_racers, __ATOMIC_RELAXED); n++) {
        struct timespec ts = {0, (long)(5 + (n * 7) % 41) * 1000000L};
        nanosleep(&ts, NULL);
        CHECK(mlxrun_cancel(models[1]) == MLXRUN_OK, "cancel");
    }
    return NULL;
}

/* Loads, uses and frees a third model again and again beside the others. */
static void *cycler(void *arg) {
    (void)arg;
    while (!__atomic_load_n(&stop_racers, __ATOMIC_RELAXED) || cycles == 0) {
        mlxrun_model *m = NULL;
        CHECK(mlxrun_model_load(cycled_path, NULL, &m) == MLXRUN_OK, "load %s", cycled_path);
        ids_t got;
        CHECK(generate(m, "Hello", &got, NULL) == MLXRUN_OK && got.n == MAX_TOKENS, "generate on the cycled model");
        mlxrun_model_free(m);
        cycles++;
    }
    return NULL;
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "concurrency_test: no progress within the deadline: a deadlock\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(3);
}

/* A load over the memory limit fails with an error naming the limit; raising the limit
 * loads it; a loaded model serves throughout. */
static void test_memory_limit(void) {
    ids_t before, after;
    CHECK(generate(models[0], PROMPTS[0], &before, NULL) == MLXRUN_OK, "serve before");
    mlxrun_clear_cache();
    size_t active = mlxrun_get_active_memory(), previous = 0;
    size_t limit = active + 4096;
    CHECK(mlxrun_set_memory_limit(limit, &previous) == MLXRUN_OK, "set limit");
    mlxrun_model *m = NULL;
    mlxrun_status st = mlxrun_model_load(cycled_path, NULL, &m);
    char want[64];
    snprintf(want, sizeof want, "memory limit is %zu bytes", limit);
    CHECK(st == MLXRUN_ERR_MLX && m == NULL, "load under a %zu-byte limit: status %d", limit, (int)st);
    CHECK(strstr(mlxrun_last_error(), want) != NULL, "the error names the limit: %s", mlxrun_last_error());
    CHECK(generate(models[0], PROMPTS[0], &after, NULL) == MLXRUN_OK && after.n == before.n &&
              memcmp(after.ids, before.ids, sizeof(int) * (size_t)after.n) == 0,
          "the loaded model serves under the limit");
    CHECK(mlxrun_set_memory_limit(previous, NULL) == MLXRUN_OK, "restore limit");
    CHECK(mlxrun_model_load(cycled_path, NULL, &m) == MLXRUN_OK, "load once the limit is raised");
    mlxrun_model_free(m);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL_A MODEL_B MODEL_C\n", argv[0]);
        return 2;
    }
    signal(SIGALRM, on_alarm);
    alarm(DEADLINE_S);
    cycled_path = argv[3];
    for (int k = 0; k < N_MODELS; k++) {
        CHECK(mlxrun_model_load(argv[1 + k], NULL, &models[k]) == MLXRUN_OK, "load %s", argv[1 + k]);
        for (int p = 0; p < N_PROMPTS; p++) {
            mlxrun_finish_reason finish;
            CHECK(generate(models[k], PROMPTS[p], &reference[k][p], &finish) == MLXRUN_OK &&
                      finish == MLXRUN_FINISH_LENGTH,
                  "serial reference");
        }
    }

    pthread_t workers[N_WORKERS], cancel_thread, cycle_thread;
    for (int w = 0; w < N_WORKERS; w++) CHECK(pthread_create(&workers[w], NULL, worker, (void *)(size_t)w) == 0, "spawn");
    CHECK(pthread_create(&cancel_thread, NULL, canceller, NULL) == 0, "spawn");
    CHECK(pthread_create(&cycle_thread, NULL, cycler, NULL) == 0, "spawn");
    for (int w = 0; w < N_WORKERS; w++) pthread_join(workers[w], NULL);
    __atomic_store_n(&stop_racers, 1, __ATOMIC_RELAXED);
    pthread_join(cancel_thread, NULL);
    pthread_join(cycle_thread, NULL);
    CHECK(cancelled_count > 0 && completed_count > 0, "%d cancelled, %d completed", cancelled_count, completed_count);
    printf("generations: %d completed, %d cancelled; %d load/free cycles beside them\n", completed_count,
           cancelled_count, cycles);

    test_memory_limit();
    for (int k = 0; k < N_MODELS; k++) mlxrun_model_free(models[k]);
    printf("PASSED %d\n", checks);
    return 0;
}
