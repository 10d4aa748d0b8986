#include "dropout.h"

#include "functional.h"

namespace mg::nn {

uint64_t draw_seed(Generator* gen) {
  return static_cast<uint64_t>(randint(0, int64_t{1} << 62, {}, kCPU, gen).item<int64_t>());
}

Dropout::Dropout(double p, Generator* gen) : p_(p), generator_(draw_seed(gen)) {
  MG_CHECK(p >= 0.0 && p <= 1.0, "Dropout: probability must be in [0, 1], got ", p);
}

Tensor Dropout::forward(const Params&, const Tensor& x) {
  return functional::dropout(x, p_, is_training(), &generator_);
}

}  // namespace mg::nn
