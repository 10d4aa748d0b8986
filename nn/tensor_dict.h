#pragma once
// An ordered map from dotted names ("encoder.layers.0.attn.q_proj.weight") to tensors: a
// module's parameters, a state dict, a set of MAML fast weights, or the contents of a file.
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../tensor/tensor.h"

namespace mg::nn {

class TensorDict {
 public:
  using Item = std::pair<std::string, Tensor>;

  TensorDict() = default;
  TensorDict(std::initializer_list<Item> items);

  // Adds a new entry; throws mg::Error if the name is already present.
  void insert(std::string name, Tensor tensor);
  // Adds or replaces.
  void set(const std::string& name, Tensor tensor);
  bool contains(std::string_view name) const;
  // Throws mg::Error naming the missing key.
  const Tensor& at(std::string_view name) const;
  // Undefined tensor when absent.
  Tensor get(std::string_view name) const;
  void erase(std::string_view name);

  std::size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }
  const std::vector<Item>& items() const { return items_; }
  std::vector<std::string> keys() const;
  std::vector<Tensor> values() const;

  // A new dict with the same keys, each tensor mapped through fn (e.g. detach, clone).
  template <typename Fn>
  TensorDict map(Fn&& fn) const {
    TensorDict out;
    out.items_.reserve(items_.size());
    for (const auto& [name, t] : items_) out.insert(name, fn(t));
    return out;
  }
  // The entries whose names start with prefix, with the prefix removed.
  TensorDict with_prefix_removed(std::string_view prefix) const;

 private:
  std::vector<Item> items_;
  std::unordered_map<std::string, std::size_t> index_;
};

}  // namespace mg::nn
