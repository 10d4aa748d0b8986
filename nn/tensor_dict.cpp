#include "tensor_dict.h"

namespace mg::nn {

TensorDict::TensorDict(std::initializer_list<Item> items) {
  for (const auto& [name, t] : items) insert(name, t);
}

void TensorDict::insert(std::string name, Tensor tensor) {
  MG_CHECK(index_.find(name) == index_.end(), "TensorDict: duplicate name '", name, "'");
  index_.emplace(name, items_.size());
  items_.emplace_back(std::move(name), std::move(tensor));
}

void TensorDict::set(const std::string& name, Tensor tensor) {
  auto it = index_.find(name);
  if (it == index_.end())
    insert(name, std::move(tensor));
  else
    items_[it->second].second = std::move(tensor);
}

bool TensorDict::contains(std::string_view name) const { return index_.find(std::string(name)) != index_.end(); }

const Tensor& TensorDict::at(std::string_view name) const {
  auto it = index_.find(std::string(name));
  MG_CHECK(it != index_.end(), "TensorDict: no tensor named '", name, "'");
  return items_[it->second].second;
}

Tensor TensorDict::get(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? Tensor() : items_[it->second].second;
}

void TensorDict::erase(std::string_view name) {
  auto it = index_.find(std::string(name));
  if (it == index_.end()) return;
  items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(it->second));
  index_.clear();
  for (std::size_t i = 0; i < items_.size(); ++i) index_.emplace(items_[i].first, i);
}

std::vector<std::string> TensorDict::keys() const {
  std::vector<std::string> out;
  out.reserve(items_.size());
  for (const auto& item : items_) out.push_back(item.first);
  return out;
}

std::vector<Tensor> TensorDict::values() const {
  std::vector<Tensor> out;
  out.reserve(items_.size());
  for (const auto& item : items_) out.push_back(item.second);
  return out;
}

TensorDict TensorDict::with_prefix_removed(std::string_view prefix) const {
  TensorDict out;
  for (const auto& [name, t] : items_)
    if (name.size() >= prefix.size() && name.compare(0, prefix.size(), prefix) == 0)
      out.insert(name.substr(prefix.size()), t);
  return out;
}

}  // namespace mg::nn
