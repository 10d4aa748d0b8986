#pragma once
// A block of device memory shared by a tensor and all its views, with the version
// counter that in-place ops bump so that autograd can detect stale saved tensors.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "device.h"

namespace mg {

class Storage {
 public:
  // Allocates nbytes on device through that device's backend.
  Storage(std::size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  std::size_t nbytes_ = 0;
  Device device_;
  uint64_t version_ = 0;
};

}  // namespace mg
