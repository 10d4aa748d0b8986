#pragma once
// The CPU backend: own kernels, OpenMP over outer loops. backend_for(cpu) returns it directly
// (no static registration, which a static library would drop).
#include "../backend.h"

namespace mg {

Backend& cpu_backend();

}  // namespace mg
