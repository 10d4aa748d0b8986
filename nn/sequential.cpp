#include "sequential.h"

#include <string>

namespace mg::nn {

ModuleList::ModuleList(const std::vector<std::shared_ptr<Module>>& modules) {
  for (const auto& m : modules) push_back(m);
}

ModuleList& ModuleList::push_back(std::shared_ptr<Module> module) {
  register_module(std::to_string(children().size()), std::move(module));
  return *this;
}

const std::shared_ptr<Module>& ModuleList::operator[](std::size_t i) const {
  MG_CHECK(i < children().size(), type_name(), ": index ", i, " is out of range for ", children().size(), " modules");
  return children()[i].second;
}

Tensor Sequential::forward(const Params& params, const Tensor& x) {
  Tensor y = x;
  for (const auto& [name, module] : children()) y = module->forward(params.sub(name), y);
  return y;
}

}  // namespace mg::nn
