#pragma once
// The one list of differentiable ops. Every op that records a node, and every composite
// built from them that is part of the public API, appears here exactly once. The gradcheck
// registry (tests/gradcheck_test.cpp) must hold an entry for each: a missing one fails the test.
#include <cstddef>
#include <string_view>

namespace mg {

#define MG_DIFFERENTIABLE_OPS(X)                                                                      \
  /* binary, broadcasting */                                                                          \
  X(add) X(sub) X(sub_scaled) X(mul) X(div) X(pow) X(maximum) X(minimum) X(where) X(clamp)            \
  /* unary */                                                                                         \
  X(neg) X(exp) X(log) X(sqrt) X(rsqrt) X(abs) X(sin) X(cos) X(tanh) X(sigmoid) X(relu)               \
  X(gelu_tanh) X(gelu_erf) X(softplus) X(erf) X(square) X(reciprocal)                                 \
  /* reductions */                                                                                    \
  X(sum) X(mean) X(amax) X(amin) X(max_dim) X(min_dim) X(logsumexp) X(var)                            \
  /* linear algebra */                                                                                \
  X(matmul) X(affine)                                                                                 \
  /* normalisation */                                                                                 \
  X(softmax) X(log_softmax) X(layer_norm) X(batch_norm)                                               \
  /* losses */                                                                                        \
  X(cross_entropy_rows)                                                                               \
  /* indexing */                                                                                      \
  X(index_select) X(index_add) X(gather) X(scatter_add) X(embedding)                                  \
  /* joining */                                                                                       \
  X(concat) X(stack)                                                                                  \
  /* views and copies */                                                                              \
  X(reshape) X(transpose) X(permute) X(narrow) X(slice) X(select) X(expand) X(squeeze) X(unsqueeze)   \
  X(contiguous) X(clone) X(to_dtype) X(to_device)                                                    \
  /* convolution and pooling, 2-D, NCHW */                                                            \
  X(unfold2d) X(fold2d) X(conv2d) X(conv2d_input_grad) X(conv2d_weight_grad) X(max_pool2d) X(max_unpool2d)

enum class OpId : int {
#define MG_OP_ENUM(name) name,
  MG_DIFFERENTIABLE_OPS(MG_OP_ENUM)
#undef MG_OP_ENUM
      Count
};

inline constexpr std::size_t kNumDifferentiableOps = static_cast<std::size_t>(OpId::Count);

inline constexpr std::string_view kOpNames[] = {
#define MG_OP_NAME(name) #name,
    MG_DIFFERENTIABLE_OPS(MG_OP_NAME)
#undef MG_OP_NAME
};

constexpr std::string_view op_name(OpId op) { return kOpNames[static_cast<int>(op)]; }

}  // namespace mg
