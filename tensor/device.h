#pragma once
// Where a tensor's memory lives: "cpu" or "cuda:N".
#include <cstdint>
#include <ostream>
#include <string>

namespace mg {

enum class DeviceType : uint8_t { CPU = 0, CUDA = 1 };
inline constexpr int kNumDeviceTypes = 2;

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  Device() = default;
  Device(DeviceType type_, int index_ = 0) : type(type_), index(index_) {}  // NOLINT: implicit by design
  // Parses "cpu", "cuda", "cuda:1"; throws mg::Error on anything else.
  Device(const std::string& spec);  // NOLINT
  Device(const char* spec) : Device(std::string(spec)) {}  // NOLINT

  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  std::string str() const;
  friend bool operator==(const Device&, const Device&) = default;
};

inline const Device kCPU{DeviceType::CPU, 0};

inline std::ostream& operator<<(std::ostream& out, const Device& device) { return out << device.str(); }

}  // namespace mg
