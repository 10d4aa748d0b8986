#pragma once
// The callable a differentiable op records as its backward formula. Like std::function, but the
// captured state (often two shapes) lives in the small-object pool: std::function would put
// every capture larger than two pointers on the heap, once per recorded op.
#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

#include "../tensor/small_object_pool.h"

namespace mg {

template <typename Result, typename Args>
class PooledFunction {
 public:
  PooledFunction() = default;
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, PooledFunction>>>
  PooledFunction(F&& f) {  // NOLINT: implicit, like std::function
    using Fn = std::decay_t<F>;
    static_assert(alignof(Fn) <= alignof(std::max_align_t), "over-aligned captures are not supported");
    void* memory = pool::allocate(sizeof(Fn));
    try {
      object_ = new (memory) Fn(std::forward<F>(f));
    } catch (...) {
      pool::deallocate(memory, sizeof(Fn));
      throw;
    }
    call_ = [](void* object, const Args& args) -> Result { return (*static_cast<Fn*>(object))(args); };
    destroy_ = [](void* object) noexcept {
      static_cast<Fn*>(object)->~Fn();
      pool::deallocate(object, sizeof(Fn));
    };
  }
  PooledFunction(PooledFunction&& other) noexcept
      : object_(std::exchange(other.object_, nullptr)), call_(other.call_), destroy_(other.destroy_) {}
  PooledFunction& operator=(PooledFunction&& other) noexcept {
    if (this != &other) {
      reset();
      object_ = std::exchange(other.object_, nullptr);
      call_ = other.call_;
      destroy_ = other.destroy_;
    }
    return *this;
  }
  PooledFunction(const PooledFunction&) = delete;
  PooledFunction& operator=(const PooledFunction&) = delete;
  ~PooledFunction() { reset(); }

  explicit operator bool() const { return object_ != nullptr; }
  Result operator()(const Args& args) const { return call_(object_, args); }

 private:
  void reset() noexcept {
    if (object_ != nullptr) destroy_(object_);
    object_ = nullptr;
  }

  void* object_ = nullptr;
  Result (*call_)(void*, const Args&) = nullptr;
  void (*destroy_)(void*) noexcept = nullptr;
};

}  // namespace mg
