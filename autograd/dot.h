#pragma once
// Graphviz export of the tape behind a tensor, for reading and teaching.
#include <string>

#include "../tensor/tensor.h"

namespace mg {

// The nodes (op name, sequence number, output shape) and edges that backward would walk from t,
// as a DOT digraph with data flowing from leaves to t. `dot -Tsvg` renders it.
std::string to_dot(const Tensor& t);

}  // namespace mg
