#include "mlp.h"

#include "activation.h"
#include "dropout.h"
#include "linear.h"

namespace mg::nn {

std::shared_ptr<Sequential> make_mlp(const MLPOptions& options, Generator* gen) {
  MG_CHECK(options.sizes.size() >= 2, "make_mlp: sizes needs at least {in, out}, got ", options.sizes.size(),
           " entries");
  auto net = std::make_shared<Sequential>();
  for (std::size_t i = 0; i + 1 < options.sizes.size(); ++i) {
    net->push_back(std::make_shared<Linear>(options.sizes[i], options.sizes[i + 1], options.bias, gen));
    if (i + 2 == options.sizes.size()) break;
    net->push_back(make_activation(options.activation));
    if (options.dropout > 0.0) net->push_back(std::make_shared<Dropout>(options.dropout, gen));
  }
  return net;
}

}  // namespace mg::nn
