#include <metagrad/metagrad.h>
#include <iostream>

int main() {
  mg::Tensor x = mg::tensor({0.5, 1.0, 2.0}, mg::kFloat64).requires_grad_();
  mg::Tensor y = (x * x * x * mg::sin(x)).sum();
  mg::Tensor g1 = mg::grad({y}, {x}, {}, {.create_graph = true})[0];
  mg::Tensor g2 = mg::grad({g1.sum()}, {x}, {}, {.create_graph = true})[0];
  mg::Tensor g3 = mg::grad({g2.sum()}, {x})[0];
  std::cout << g3 << "\n";
}
