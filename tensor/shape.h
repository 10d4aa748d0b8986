#pragma once
// Shapes, strides and the arithmetic on them: sizes, contiguity, broadcasting, dim wrapping.
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "small_vector.h"

namespace mg {

// Up to 6 dims without a heap allocation (task-batched convolutions and attention use 5).
using Shape = SmallVector<int64_t, 6>;
using Strides = SmallVector<int64_t, 6>;

int64_t numel_of(const Shape& shape);
Strides contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[3,4]"

// NumPy broadcasting of two shapes; throws mg::Error naming op when they do not broadcast.
Shape broadcast_shapes(std::string_view op, const Shape& a, const Shape& b);

// Turns a possibly negative dim into [0, ndim); throws naming op when out of range.
int wrap_dim(std::string_view op, int64_t dim, int64_t ndim);
// Wraps, sorts and de-duplicates a list of dims; an empty list means all dims.
std::vector<int> wrap_dims(std::string_view op, const std::vector<int64_t>& dims, int64_t ndim);

// The shape of a reduction over dims, with or without the reduced dims kept as size 1.
Shape reduced_shape(const Shape& shape, const std::vector<int>& dims, bool keepdim);

// shape and strides without dim, into out_shape and out_strides: the rows a kernel that works
// along one dim walks (softmax, index_select, gather, ...), on any backend.
void drop_dim(const Shape& shape, const Strides& strides, int dim, Shape& out_shape, Strides& out_strides);

struct ShapeView {
  const Shape& shape;
};
inline std::ostream& operator<<(std::ostream& out, ShapeView view) { return out << shape_str(view.shape); }

}  // namespace mg
