// Waiting for MLX work while this process belongs to a distributed group (see
// distributed.cpp): bounded, because a collective whose peer is gone can wait forever.
#pragma once

#include <vector>

#include "mlx/mlx.h"

namespace shim_dist {

// Evaluates `arrays` and waits for them. Outside a group: mx::eval. In a group: the work
// is queued and watched; when this process has used (almost) no CPU for the group's idle
// timeout while the arrays are still not ready, it is waiting on peers that do not answer,
// and this throws instead of waiting on.
void eval(const std::vector<mlx::core::array>& arrays);

}  // namespace shim_dist
