#pragma once
// Internal: the bounds check shared by Tensor::make_view and kernels::as_strided.
#include <cstdint>
#include <string_view>

#include "dtype.h"
#include "shape.h"
#include "storage.h"

namespace mg::detail {

// Throws mg::Error naming op unless every element the geometry can reach lies inside storage.
void check_view_bounds(std::string_view op, const Storage& storage, DType dtype, const Shape& shape,
                       const Strides& strides, int64_t offset);

}  // namespace mg::detail
