#include "../threads.h"

#include "../error.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mg {

void set_num_threads(int n) {
  MG_CHECK(n >= 1, "set_num_threads: needs at least 1 thread, got ", n);
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace mg
