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

// Writes f32/f64/i64 tensors (any strides, any device; written contiguous, little-endian) in the
// reference implementation's order: "__metadata__" first, then I64, F64, F32 tensors, each group
// sorted by name, so every tensor is aligned to its element size. Writes to a temporary file beside
// path, syncs it and renames it over path, so a crash never leaves half a file.
void save_safetensors(const std::string& path, const TensorDict& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Reads F32, F64, I64 as themselves; F16 and BF16 converted exactly to float32; I32, U32, I16, U16,
// I8, U8 and BOOL (as 0/1) converted to int64. Other dtypes (U64, F8_*, ...) are refused. Validation
// is strict: the header must be well-formed JSON (no duplicate keys, valid UTF-8), every entry needs
// a dtype, a shape and data_offsets that agree, and the tensors must tile the data section exactly
// (no overlaps, no gaps, no trailing bytes). Unknown fields inside an entry are ignored, as the
// reference implementation does. Any malformed or hostile file is an mg::Error naming the file and
// the problem; the loader never reads past the end of the buffer nor allocates more than it holds.
SafetensorsFile load_safetensors(const std::string& path);

// The same on in-memory bytes (the fuzz target and tests use these).
std::string serialize_safetensors(const TensorDict& tensors, const std::map<std::string, std::string>& metadata = {});
SafetensorsFile parse_safetensors(const uint8_t* data, std::size_t size, const std::string& source = "<memory>");

}  // namespace mg::nn
