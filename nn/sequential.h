#pragma once
// Containers: Sequential chains single-input modules; ModuleList only holds them (for stacks
// whose forward passes more than one tensor). Children are named "0", "1", ... as in PyTorch.
#include <cstddef>
#include <memory>
#include <vector>

#include "module.h"

namespace mg::nn {

class ModuleList : public Module {
 public:
  ModuleList() = default;
  explicit ModuleList(const std::vector<std::shared_ptr<Module>>& modules);
  std::string type_name() const override { return "ModuleList"; }
  ModuleList& push_back(std::shared_ptr<Module> module);
  std::size_t size() const { return children().size(); }
  const std::shared_ptr<Module>& operator[](std::size_t i) const;
};

class Sequential : public ModuleList {
 public:
  using ModuleList::ModuleList;
  std::string type_name() const override { return "Sequential"; }
  using Module::forward;
  Tensor forward(const Params& params, const Tensor& x) override;
};

}  // namespace mg::nn
