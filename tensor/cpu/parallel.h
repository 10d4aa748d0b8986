#pragma once
// The one place where the CPU backend goes parallel: OpenMP over chunks of an index range,
// only when there is enough work to pay for waking the threads. Compiles (serially) without
// OpenMP too.
#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mg::cpu {

// Below this much work (roughly: elements touched) an op runs on the calling thread. Waking the
// other threads and joining them costs microseconds (more on a busy or virtualised machine), as
// much as a memory-bound pass over ~100K floats: per-task weights of a task-batched MLP ([25,40,40])
// ran slower on 2 threads than on 1 with a threshold of 32K.
inline constexpr int64_t kParallelThreshold = int64_t{1} << 18;

// Calls fn(begin, end) on disjoint chunks covering [0, n). cost_per_item estimates the work of
// one item (in elements) so that the decision to go parallel depends on the total work.
// fn must not throw and must be safe to call concurrently on disjoint ranges.
template <typename Fn>
void parallel_for(int64_t n, int64_t cost_per_item, Fn&& fn) {
  if (n <= 0) return;
#ifdef _OPENMP
  const int64_t cost = std::max<int64_t>(cost_per_item, 1);
  const int64_t total = n > INT64_MAX / cost ? INT64_MAX : n * cost;
  if (n > 1 && total >= kParallelThreshold && !omp_in_parallel()) {
    const int64_t threads = omp_get_max_threads();
    const int64_t chunks = std::min({n, threads, std::max<int64_t>(total / (kParallelThreshold / 2), 1)});
    if (chunks > 1) {
#pragma omp parallel for schedule(static)
      for (int64_t c = 0; c < chunks; ++c) fn(n * c / chunks, n * (c + 1) / chunks);
      return;
    }
  }
#else
  (void)cost_per_item;
#endif
  fn(int64_t{0}, n);
}

}  // namespace mg::cpu
