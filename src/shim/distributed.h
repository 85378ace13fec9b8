// The shim's surface over MLX's distributed layer (mlx::core::distributed): a group of
// processes and its collectives, same conventions as shim.h (0 = success, 1 = failure with
// the message in shim_last_error; no C++ exception leaves these functions).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "shim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shim_group shim_group;  // a distributed::Group

// 1 when MLX was built with `backend` ("ring", "mpi", "nccl", "jaccl" or "any"), else 0.
int shim_dist_is_available(const char* backend);
// Joins the group the environment describes (the ring backend: MLX_RANK and MLX_HOSTFILE)
// through `backend`. MLX's own init waits for every peer without limit; this one fails
// after `timeout_s` seconds (> 0) naming the backend, leaving the stuck attempt behind on a
// detached thread. The group is owned by the caller (shim_group_free).
int shim_dist_init(const char* backend, double timeout_s, shim_group** out);
void shim_group_free(shim_group* g);
// 1 once work of this process's group has failed or stalled (MLX may then hold a stream
// thread stuck for good: see exit_guard.h), else 0.
int shim_dist_failed(void);
int shim_group_rank(const shim_group* g);
int shim_group_size(const shim_group* g);
// Collectives over the group (lazy like every op; the communication happens at eval).
int shim_dist_all_sum(const shim_array* x, const shim_group* g, shim_array** out);
int shim_dist_all_max(const shim_array* x, const shim_group* g, shim_array** out);
int shim_dist_all_gather(const shim_array* x, const shim_group* g, shim_array** out);
int shim_dist_send(const shim_array* x, int dst, const shim_group* g, shim_array** out);
// Receives from `src` an array of `like`'s shape and dtype (its values are not read).
int shim_dist_recv_like(const shim_array* like, int src, const shim_group* g, shim_array** out);

#ifdef __cplusplus
}
#endif
