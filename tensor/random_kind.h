#pragma once
// The distributions a backend's random fill draws from (tensor/random_sample.h maps a Philox
// block to one sample of each).
#include <cstdint>

namespace mg {

enum class RandomKind : uint8_t { Uniform, Normal, Integer };

}  // namespace mg
