// libFuzzer target for the safetensors reader. Every input must either parse or be refused with
// an mg::Error: a crash, a sanitizer report, a hang or any other exception is a bug. What parses
// must also survive a write and a second read unchanged, so the reader and the writer agree.
//   cmake -B build/fuzz -DCMAKE_CXX_COMPILER=clang++ -DMG_BUILD_FUZZ=ON ...   (see .ci/run)
//   build/fuzz/fuzz/safetensors_fuzz CORPUS_DIR -dict=tests/fuzz/safetensors.dict
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "nn/safetensors.h"

namespace {

[[noreturn]] void mismatch(const char* what, const std::string& name) {
  std::fprintf(stderr, "safetensors round trip changed %s of tensor '%s'\n", what, name.c_str());
  std::abort();
}

void check_round_trip(const mg::nn::SafetensorsFile& file) {
  const std::string bytes = mg::nn::serialize_safetensors(file.tensors, file.metadata);
  const mg::nn::SafetensorsFile again =
      mg::nn::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "round trip");
  if (again.metadata != file.metadata) mismatch("the metadata", "");
  if (again.tensors.size() != file.tensors.size()) mismatch("the number", "");
  for (const auto& [name, t] : file.tensors) {
    const mg::Tensor u = again.tensors.get(name);
    if (!u.defined()) mismatch("the name", name);
    if (u.dtype() != t.dtype()) mismatch("the dtype", name);
    if (u.shape() != t.shape()) mismatch("the shape", name);
    const std::size_t n = static_cast<std::size_t>(t.numel()) * mg::element_size(t.dtype());
    if (n > 0 && std::memcmp(u.raw_data(), t.raw_data(), n) != 0) mismatch("the bytes", name);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  mg::nn::SafetensorsFile file;
  try {
    file = mg::nn::parse_safetensors(data, size, "fuzz input");
  } catch (const mg::Error&) {
    return 0;
  }
  check_round_trip(file);
  return 0;
}
