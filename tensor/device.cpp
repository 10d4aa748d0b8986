#include "device.h"

#include <cctype>

#include "error.h"

namespace mg {

Device::Device(const std::string& spec) {
  if (spec == "cpu") return;
  const std::string prefix = "cuda";
  MG_CHECK(spec.rfind(prefix, 0) == 0, "device: cannot parse \"", spec, "\" (expected cpu, cuda or cuda:N)");
  type = DeviceType::CUDA;
  if (spec.size() == prefix.size()) return;
  MG_CHECK(spec[prefix.size()] == ':' && spec.size() > prefix.size() + 1 && spec.size() < prefix.size() + 6,
           "device: cannot parse \"", spec, "\" (expected cpu, cuda or cuda:N)");
  int parsed = 0;
  for (size_t i = prefix.size() + 1; i < spec.size(); ++i) {
    MG_CHECK(std::isdigit(static_cast<unsigned char>(spec[i])), "device: cannot parse \"", spec,
             "\" (expected cpu, cuda or cuda:N)");
    parsed = parsed * 10 + (spec[i] - '0');
  }
  index = parsed;
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

}  // namespace mg
