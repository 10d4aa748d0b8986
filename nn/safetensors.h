#pragma once
// Weights and checkpoints in the safetensors format (https://huggingface.co/docs/safetensors):
// an 8-byte little-endian header length, a JSON header mapping names to dtype, shape and byte
// offsets (plus an optional "__metadata__" map of strings), then the raw little-endian data.
// Files we write are readable by PyTorch / Hugging Face tools, and theirs by us.
#include <cstdint>
#include <map>
#include <string>

#include "tensor_dict.h"

namespace mg::nn {

struct SafetensorsFile {
  TensorDict tensors;                          // in file order of data offsets
  std::map<std::string, std::string> metadata;  // "__metadata__"
};

// Writes f32/f64/i64 tensors (any strides; written contiguous), names sorted as the reference
// implementation does. Writes to a temporary file and renames, so a crash never leaves half a file.
void save_safetensors(const std::string& path, const TensorDict& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Reads F32, F64, I64 as themselves and F16, BF16 converted to float32 (also I32/I16/I8/U8/BOOL
// converted to int64). Any malformed or hostile file is an mg::Error naming the file and the problem;
// the loader never reads past the end of the buffer.
SafetensorsFile load_safetensors(const std::string& path);

// The same on in-memory bytes (the fuzz target and tests use these).
std::string serialize_safetensors(const TensorDict& tensors, const std::map<std::string, std::string>& metadata = {});
SafetensorsFile parse_safetensors(const uint8_t* data, std::size_t size, const std::string& source = "<memory>");

}  // namespace mg::nn
