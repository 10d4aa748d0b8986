#pragma once
// The number of threads CPU kernels may use (OpenMP's pool); 1 in a build without OpenMP.

namespace mg {

// n >= 1; throws mg::Error otherwise. Without OpenMP any n is accepted and ignored.
void set_num_threads(int n);
int num_threads();

}  // namespace mg
