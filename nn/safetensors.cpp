#include "safetensors.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#define MG_SAFETENSORS_POSIX 1
#endif

#include "../tensor/kernels.h"

namespace mg::nn {
namespace {

// Every limit below exists so that a hostile file fails with a message instead of exhausting
// memory, the stack or int64 arithmetic. None of them is reached by a real checkpoint.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's cap
constexpr int kMaxJsonDepth = 64;
constexpr std::size_t kMaxDims = 64;
// Bounds the product of all (non-zero) dims, so contiguous strides and byte counts stay in int64
// even for a zero-element shape like [0, 2^40, 2^40].
constexpr uint64_t kMaxSpan = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / 8;

// The length of the well-formed UTF-8 sequence starting at s[i] (a non-ASCII lead byte), or 0
// when it is overlong, truncated, a surrogate or past U+10FFFF.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  std::size_t extra;
  uint32_t cp;
  if (lead >= 0xC2 && lead <= 0xDF) extra = 1, cp = lead & 0x1F;
  else if (lead >= 0xE0 && lead <= 0xEF) extra = 2, cp = lead & 0x0F;
  else if (lead >= 0xF0 && lead <= 0xF4) extra = 3, cp = lead & 0x07;
  else return 0;
  if (s.size() - i <= extra) return 0;
  for (std::size_t k = 1; k <= extra; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (c & 0x3F);
  }
  if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return extra + 1;
}

// ---------------------------------------------------------------------------------------------
// A strict JSON reader (RFC 8259) that the header parser pulls values from one at a time, so
// memory stays proportional to what is kept (names, shapes, metadata) and not to the nesting of
// whatever else a hostile header contains. Strict where a lenient parser would let through
// duplicate keys, lone surrogates, bad UTF-8 or trailing garbage: exactly where two readers of
// the same file could disagree on its contents.
// ---------------------------------------------------------------------------------------------
enum class JsonKind : uint8_t { Null, Bool, Number, String, Array, Object };

std::string_view kind_name(JsonKind kind) {
  switch (kind) {
    case JsonKind::Null: return "null";
    case JsonKind::Bool: return "a boolean";
    case JsonKind::Number: return "a number";
    case JsonKind::String: return "a string";
    case JsonKind::Array: return "an array";
    case JsonKind::Object: return "an object";
  }
  return "?";
}

class JsonReader {
 public:
  JsonReader(std::string_view text, std::string_view where) : text_(text), where_(where) {}

  [[noreturn]] void fail(std::string_view what) const {
    MG_FAIL(where_, ": invalid JSON in header at byte ", pos_, ": ", what);
  }

  // The kind of the next value (after whitespace); a syntax error if none can start here.
  JsonKind next_kind() {
    skip_space();
    if (at_end()) fail("truncated: expected a value");
    switch (peek()) {
      case '{': return JsonKind::Object;
      case '[': return JsonKind::Array;
      case '"': return JsonKind::String;
      case 't':
      case 'f': return JsonKind::Bool;
      case 'n': return JsonKind::Null;
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return JsonKind::Number;
        fail("unexpected character");
    }
  }

  // Objects and arrays are read as: begin_*(depth); while (next_*(...)) { read the value }.
  void begin_object(int depth) { begin('{', depth); }
  // Reads the next key and its ':' into key; false at the closing brace.
  bool next_member(std::string& key) {
    if (!next_item('}')) return false;
    if (at_end()) fail("truncated: expected a key");
    if (peek() != '"') fail("expected a string key");
    key = read_string();
    skip_space();
    if (at_end()) fail("truncated: expected ':'");
    if (peek() != ':') fail("expected ':'");
    ++pos_;
    return true;
  }
  void begin_array(int depth) { begin('[', depth); }
  bool next_element() { return next_item(']'); }

  std::string read_string_value() {
    if (next_kind() != JsonKind::String) fail("expected a string");
    return read_string();
  }
  // The literal as written, validated against the JSON number grammar.
  std::string read_number_value() {
    if (next_kind() != JsonKind::Number) fail("expected a number");
    return read_number();
  }

  // Validates and discards one value of any kind (duplicate keys still count as errors).
  void skip_value(int depth) {
    switch (next_kind()) {
      case JsonKind::Object: {
        begin_object(depth);
        std::vector<std::string> keys;
        std::string key;
        while (next_member(key)) {
          keys.push_back(std::move(key));
          skip_value(depth + 1);
        }
        check_unique(std::move(keys));
        break;
      }
      case JsonKind::Array:
        begin_array(depth);
        while (next_element()) skip_value(depth + 1);
        break;
      case JsonKind::String: read_string(); break;
      case JsonKind::Number: read_number(); break;
      case JsonKind::Bool: read_literal(peek() == 't' ? "true" : "false"); break;
      case JsonKind::Null: read_literal("null"); break;
    }
  }

  void check_unique(std::vector<std::string> keys) const {
    std::sort(keys.begin(), keys.end());
    const auto dup = std::adjacent_find(keys.begin(), keys.end());
    if (dup != keys.end()) fail("duplicate key \"" + *dup + "\"");
  }

  void finish() {
    skip_space();
    if (!at_end()) fail("unexpected characters after the top-level value");
  }

 private:
  bool at_end() const { return pos_ >= text_.size(); }
  unsigned char peek() const { return static_cast<unsigned char>(text_[pos_]); }

  void skip_space() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++pos_;
  }

  void begin(char open, int depth) {
    if (depth > kMaxJsonDepth) fail("nesting deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    skip_space();
    if (at_end() || text_[pos_] != open) fail(std::string("expected '") + open + "'");
    ++pos_;
    first_ = true;
  }

  // Consumes the ',' before an item, or the closing bracket. One flag serves every level: it is
  // true only between begin() and the first item, since a nested container is always read to its
  // end (leaving it false) before the enclosing one asks for its next item.
  bool next_item(char close) {
    skip_space();
    if (at_end()) fail(std::string("truncated: expected ',' or '") + close + "'");
    if (peek() == static_cast<unsigned char>(close)) {
      ++pos_;
      first_ = false;
      return false;
    }
    if (!first_) {
      if (peek() != ',') fail(std::string("expected ',' or '") + close + "'");
      ++pos_;
      skip_space();
      if (at_end()) fail("truncated: expected a value after ','");
      if (peek() == static_cast<unsigned char>(close)) fail("trailing ',' before '" + std::string(1, close) + "'");
    }
    first_ = false;
    return true;
  }

  void read_literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) fail("invalid literal");
    pos_ += word.size();
  }

  std::string read_number() {
    const std::size_t start = pos_;
    auto digits = [&] {
      const std::size_t from = pos_;
      while (!at_end() && peek() >= '0' && peek() <= '9') ++pos_;
      return pos_ - from;
    };
    if (peek() == '-') ++pos_;
    if (at_end()) fail("truncated number");
    if (peek() == '0') {
      ++pos_;
      if (!at_end() && peek() >= '0' && peek() <= '9') fail("leading zero in number");
    } else if (digits() == 0) {
      fail("invalid number");
    }
    if (!at_end() && peek() == '.') {
      ++pos_;
      if (digits() == 0) fail("invalid number: no digits after '.'");
    }
    if (!at_end() && (peek() == 'e' || peek() == 'E')) {
      ++pos_;
      if (!at_end() && (peek() == '+' || peek() == '-')) ++pos_;
      if (digits() == 0) fail("invalid number: no digits in exponent");
    }
    return std::string(text_.substr(start, pos_ - start));
  }

  unsigned hex4() {
    if (text_.size() - pos_ < 4) fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const unsigned char c = peek();
      unsigned d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else fail("invalid hex digit in \\u escape");
      v = v * 16 + d;
      ++pos_;
    }
    return v;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string read_string() {
    ++pos_;  // the opening quote
    std::string out;
    for (;;) {
      if (at_end()) fail("truncated string");
      const unsigned char c = peek();
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("unescaped control character in string");
      if (c >= 0x80) {
        const std::size_t n = utf8_sequence_length(text_, pos_);
        if (n == 0) fail("invalid UTF-8 in string");
        out.append(text_.substr(pos_, n));
        pos_ += n;
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      ++pos_;
      if (at_end()) fail("truncated escape");
      const char e = static_cast<char>(peek());
      ++pos_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail("unpaired low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (text_.substr(pos_, 2) != "\\u") fail("unpaired high surrogate in \\u escape");
            pos_ += 2;
            const uint32_t low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) fail("unpaired high surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: --pos_, fail("invalid escape");
      }
    }
  }

  std::string_view text_;
  std::string_view where_;
  std::size_t pos_ = 0;
  bool first_ = false;
};

// ---------------------------------------------------------------------------------------------
// dtypes
// ---------------------------------------------------------------------------------------------
enum class FileType : uint8_t { Bool, U8, I8, I16, U16, I32, U32, I64, F16, BF16, F32, F64 };

struct FileDType {
  std::string_view name;
  FileType type;
  std::size_t size;
  DType target;
};

constexpr FileDType kFileDTypes[] = {
    {"BOOL", FileType::Bool, 1, kInt64}, {"U8", FileType::U8, 1, kInt64},    {"I8", FileType::I8, 1, kInt64},
    {"I16", FileType::I16, 2, kInt64},   {"U16", FileType::U16, 2, kInt64},  {"I32", FileType::I32, 4, kInt64},
    {"U32", FileType::U32, 4, kInt64},   {"I64", FileType::I64, 8, kInt64},  {"F16", FileType::F16, 2, kFloat32},
    {"BF16", FileType::BF16, 2, kFloat32}, {"F32", FileType::F32, 4, kFloat32}, {"F64", FileType::F64, 8, kFloat64},
};

const FileDType* find_file_dtype(std::string_view name) {
  for (const auto& d : kFileDTypes)
    if (d.name == name) return &d;
  return nullptr;
}

std::string_view file_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::Float32: return "F32";
    case DType::Float64: return "F64";
    case DType::Int64: return "I64";
  }
  return "?";
}

// The reference writer's order: larger element types first (keeps every tensor aligned to its
// element size, since the data section starts 8-byte aligned), then names.
int write_rank(DType dtype) {
  switch (dtype) {
    case DType::Int64: return 2;
    case DType::Float64: return 1;
    case DType::Float32: return 0;
  }
  return 0;
}

template <typename T>
void swap_bytes_in_place(uint8_t* bytes, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) std::reverse(bytes + i * sizeof(T), bytes + (i + 1) * sizeof(T));
}

uint64_t read_le(const uint8_t* p, std::size_t n) {
  uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float32.
    const float magnitude = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -magnitude : magnitude;
  }
  const uint32_t bits = exp == 0x1F ? (sign | 0x7F800000u | (mant << 13))  // inf, NaN (payload kept)
                                    : (sign | ((exp + 112) << 23) | (mant << 13));
  return std::bit_cast<float>(bits);
}

// Converts count elements of a narrower file dtype into the tensor's own dtype.
void convert_elements(const FileDType& from, const uint8_t* src, std::size_t count, void* dst) {
  if (from.target == kFloat32) {
    float* out = static_cast<float*>(dst);
    for (std::size_t i = 0; i < count; ++i) {
      const auto bits = static_cast<uint16_t>(read_le(src + 2 * i, 2));
      out[i] = from.type == FileType::F16 ? half_to_float(bits)
                                          : std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
    }
    return;
  }
  int64_t* out = static_cast<int64_t*>(dst);
  for (std::size_t i = 0; i < count; ++i) {
    const uint64_t raw = read_le(src + from.size * i, from.size);
    switch (from.type) {
      case FileType::Bool: out[i] = raw != 0; break;
      case FileType::I8: out[i] = static_cast<int8_t>(raw); break;
      case FileType::I16: out[i] = static_cast<int16_t>(raw); break;
      case FileType::I32: out[i] = static_cast<int32_t>(raw); break;
      default: out[i] = static_cast<int64_t>(raw); break;  // U8, U16, U32
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Header validation
// ---------------------------------------------------------------------------------------------
struct Entry {
  std::string name;
  const FileDType* dtype = nullptr;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct Header {
  std::vector<Entry> entries;  // sorted by data offsets
  std::map<std::string, std::string> metadata;
};

// Parses a JSON number literal that is a non-negative integer fitting in uint64.
bool to_uint64(std::string_view s, uint64_t& out) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string_view::npos) return false;
  uint64_t v = 0;
  for (char c : s) {
    const auto d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string offsets_str(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + "," + std::to_string(end) + "]";
}

// Reads one tensor entry: {"dtype": ..., "shape": [...], "data_offsets": [begin, end]} in any
// order; other fields are validated as JSON and ignored.
Entry read_entry(JsonReader& json, const std::string& where, std::string name, uint64_t data_size) {
  const std::string what = where + ": tensor " + in_quotes(name);
  const JsonKind kind = json.next_kind();
  MG_CHECK(kind == JsonKind::Object, what, ": entry must be an object, got ", kind_name(kind));
  Entry e;
  e.name = std::move(name);
  std::string dtype;
  bool has_dtype = false, has_shape = false, has_offsets = false;
  uint64_t numel = 1;
  uint64_t span = 1;
  std::vector<std::string> keys;
  std::string key;
  json.begin_object(2);
  while (json.next_member(key)) {
    keys.push_back(key);
    if (key == "dtype") {
      has_dtype = true;
      const JsonKind k = json.next_kind();
      MG_CHECK(k == JsonKind::String, what, ": \"dtype\" must be a string, got ", kind_name(k));
      dtype = json.read_string_value();
    } else if (key == "shape") {
      has_shape = true;
      const JsonKind k = json.next_kind();
      MG_CHECK(k == JsonKind::Array, what, ": \"shape\" must be an array, got ", kind_name(k));
      e.shape.clear();
      numel = span = 1;
      json.begin_array(3);
      while (json.next_element()) {
        const JsonKind dk = json.next_kind();
        MG_CHECK(dk == JsonKind::Number, what, ": shape dims must be non-negative integers, got ", kind_name(dk));
        MG_CHECK(e.shape.size() < kMaxDims, what, ": shape has more than ", kMaxDims, " dims");
        const std::string text = json.read_number_value();
        uint64_t dim = 0;
        MG_CHECK(!text.starts_with('-'), what, ": negative shape dim ", text);
        MG_CHECK(text.find_first_of(".eE") == std::string::npos, what, ": shape dim ", text, " is not an integer");
        MG_CHECK(to_uint64(text, dim) && dim <= kMaxSpan, what, ": shape dim ", text, " is too large");
        if (dim > 1) MG_CHECK(span <= kMaxSpan / dim, what, ": shape has too many elements to address");
        span *= std::max<uint64_t>(dim, 1);
        numel *= dim;
        e.shape.push_back(static_cast<int64_t>(dim));
      }
    } else if (key == "data_offsets") {
      has_offsets = true;
      const auto bad = [&] { MG_FAIL(what, ": \"data_offsets\" must be two non-negative integers [begin, end]"); };
      if (json.next_kind() != JsonKind::Array) bad();
      json.begin_array(3);
      uint64_t* slots[] = {&e.begin, &e.end};
      std::size_t count = 0;
      while (json.next_element()) {
        if (count == 2 || json.next_kind() != JsonKind::Number || !to_uint64(json.read_number_value(), *slots[count]))
          bad();
        ++count;
      }
      if (count != 2) bad();
    } else {
      json.skip_value(3);
    }
  }
  json.check_unique(std::move(keys));

  MG_CHECK(has_dtype, what, ": missing \"dtype\"");
  e.dtype = find_file_dtype(dtype);
  MG_CHECK(e.dtype != nullptr, what, ": unsupported dtype \"", dtype,
           "\" (readable: F32, F64, I64, F16, BF16, I32, U32, I16, U16, I8, U8, BOOL)");
  MG_CHECK(has_shape, what, ": missing \"shape\"");
  MG_CHECK(has_offsets, what, ": missing \"data_offsets\"");
  const uint64_t nbytes = numel * e.dtype->size;  // numel <= span <= INT64_MAX / 8: no overflow
  MG_CHECK(e.begin <= e.end, what, ": data_offsets ", offsets_str(e.begin, e.end), " has begin > end");
  MG_CHECK(e.end <= data_size, what, ": data_offsets ", offsets_str(e.begin, e.end),
           " run past the end of the data section (", data_size, " bytes)");
  MG_CHECK(e.end - e.begin == nbytes, what, ": data_offsets ", offsets_str(e.begin, e.end), " hold ",
           e.end - e.begin, " bytes but shape ", shape_str(e.shape), " of ", e.dtype->name, " needs ", nbytes);
  return e;
}

void read_metadata(JsonReader& json, const std::string& where, std::map<std::string, std::string>& out) {
  const JsonKind kind = json.next_kind();
  MG_CHECK(kind == JsonKind::Object, where, ": \"__metadata__\" must be an object of strings, got ", kind_name(kind));
  std::string key;
  json.begin_object(2);
  while (json.next_member(key)) {
    const JsonKind k = json.next_kind();
    MG_CHECK(k == JsonKind::String, where, ": \"__metadata__\" must map strings to strings, but ", in_quotes(key),
             " is ", kind_name(k));
    std::string value = json.read_string_value();
    if (!out.emplace(key, std::move(value)).second) json.fail("duplicate key \"" + key + "\"");
  }
}

Header parse_header(const std::string& where, std::string_view text, uint64_t data_size) {
  JsonReader json(text, where);
  const JsonKind kind = json.next_kind();
  MG_CHECK(kind == JsonKind::Object, where, ": header must be a JSON object, got ", kind_name(kind));
  Header header;
  bool has_metadata = false;
  std::string name;
  json.begin_object(1);
  while (json.next_member(name)) {
    if (name == "__metadata__") {
      if (has_metadata) json.fail("duplicate key \"__metadata__\"");
      has_metadata = true;
      read_metadata(json, where, header.metadata);
    } else {
      header.entries.push_back(read_entry(json, where, std::move(name), data_size));
    }
  }
  json.finish();
  {
    std::vector<std::string> names;
    names.reserve(header.entries.size());
    for (const Entry& e : header.entries) names.push_back(e.name);
    json.check_unique(std::move(names));
  }
  // The spec requires the tensors to tile the data section: no overlaps (two tensors aliasing
  // the same bytes) and no holes (bytes that belong to nobody and could hide anything).
  std::stable_sort(header.entries.begin(), header.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : header.entries) {
    MG_CHECK(e.begin >= covered, where, ": tensor ", in_quotes(e.name), " (data_offsets ", offsets_str(e.begin, e.end),
             ") overlaps tensor ", in_quotes(previous ? previous->name : ""), " (data_offsets ",
             previous ? offsets_str(previous->begin, previous->end) : "", ")");
    MG_CHECK(e.begin == covered, where, ": gap in the data section: bytes [", covered, ",", e.begin,
             ") before tensor ", in_quotes(e.name), " belong to no tensor");
    covered = e.end;
    previous = &e;
  }
  MG_CHECK(covered == data_size, where, ": the data section has ", data_size, " bytes but the tensors cover only ",
           covered, " (trailing bytes belong to no tensor)");
  return header;
}

struct Prelude {
  uint64_t header_size = 0;
  uint64_t data_size = 0;
};

// Checks the 8-byte length against the total size; header and data then lie within the file.
Prelude check_prelude(const std::string& where, const uint8_t* first8, uint64_t file_size) {
  MG_CHECK(file_size >= 8, where, ": file is ", file_size,
           " bytes, too short for the 8-byte header length (not a safetensors file?)");
  Prelude p;
  p.header_size = read_le(first8, 8);
  MG_CHECK(p.header_size <= kMaxHeaderBytes, where, ": header length ", p.header_size, " exceeds the limit of ",
           kMaxHeaderBytes, " bytes (not a safetensors file?)");
  MG_CHECK(p.header_size <= file_size - 8, where, ": header length ", p.header_size,
           " runs past the end of the file (", file_size, " bytes)");
  p.data_size = file_size - 8 - p.header_size;
  return p;
}

// Fills tensors from the data section in offset order; read(n, dst) must deliver the next n
// bytes of it (the entries tile the section, so reading is purely sequential).
template <typename Read>
SafetensorsFile materialize(Header&& header, Read&& read) {
  SafetensorsFile file;
  file.metadata = std::move(header.metadata);
  std::vector<uint8_t> scratch;
  for (Entry& e : header.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype->target, kCPU);
    const std::size_t bytes = static_cast<std::size_t>(e.end - e.begin);
    const std::size_t count = static_cast<std::size_t>(t.numel());
    if (bytes > 0) {
      if (element_size(e.dtype->target) == e.dtype->size) {
        auto* dst = static_cast<uint8_t*>(t.raw_data());
        read(bytes, dst);
        if constexpr (std::endian::native == std::endian::big) {
          if (e.dtype->size == 8) swap_bytes_in_place<uint64_t>(dst, count);
          if (e.dtype->size == 4) swap_bytes_in_place<uint32_t>(dst, count);
        }
      } else {
        scratch.resize(bytes);
        read(bytes, scratch.data());
        convert_elements(*e.dtype, scratch.data(), count, t.raw_data());
      }
    }
    file.tensors.insert(std::move(e.name), std::move(t));
  }
  return file;
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------
bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    } else {
      out += ch;
    }
  }
  out += '"';
}

struct WritePlan {
  std::string prefix;  // 8-byte length + padded JSON header
  std::vector<Tensor> tensors;  // contiguous, on the CPU, in data order
};

WritePlan plan_write(std::string_view op, const TensorDict& tensors, const std::map<std::string, std::string>& metadata) {
  struct Item {
    const std::string* name;
    Tensor tensor;
  };
  std::vector<Item> items;
  items.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    MG_CHECK(t.defined(), op, ": tensor ", in_quotes(name), " is undefined");
    MG_CHECK(name != "__metadata__", op, ": \"__metadata__\" is reserved and cannot name a tensor");
    MG_CHECK(valid_utf8(name), op, ": tensor name ", in_quotes(name), " is not valid UTF-8");
    Tensor cpu = t.device() == kCPU ? t : kernels::to_device(t, kCPU);
    items.push_back({&name, kernels::contiguous(cpu)});
  }
  for (const auto& [key, value] : metadata)
    MG_CHECK(valid_utf8(key) && valid_utf8(value), op, ": metadata entry ", in_quotes(key), " is not valid UTF-8");
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    const int ra = write_rank(a.tensor.dtype()), rb = write_rank(b.tensor.dtype());
    return ra != rb ? ra > rb : *a.name < *b.name;
  });

  std::string json = "{";
  if (!metadata.empty()) {
    json += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) json += ',';
      first = false;
      append_json_string(json, key);
      json += ':';
      append_json_string(json, value);
    }
    json += '}';
  }
  WritePlan plan;
  uint64_t offset = 0;
  for (const Item& item : items) {
    const Tensor& t = item.tensor;
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * element_size(t.dtype());
    if (json.size() > 1) json += ',';
    append_json_string(json, *item.name);
    json += ":{\"dtype\":\"";
    json += file_dtype_name(t.dtype());
    json += "\",\"shape\":[";
    for (std::size_t d = 0; d < t.shape().size(); ++d) {
      if (d) json += ',';
      json += std::to_string(t.shape()[d]);
    }
    json += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
    plan.tensors.push_back(t);
  }
  json += '}';
  json.append((8 - json.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  plan.prefix.reserve(8 + json.size());
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) plan.prefix += static_cast<char>((n >> (8 * i)) & 0xFF);
  plan.prefix += json;
  return plan;
}

// Calls sink(bytes, n) with the little-endian bytes of a contiguous CPU tensor.
template <typename Sink>
void emit_tensor_bytes(const Tensor& t, Sink&& sink) {
  const std::size_t n = static_cast<std::size_t>(t.numel()) * element_size(t.dtype());
  if (n == 0) return;
  const auto* bytes = static_cast<const uint8_t*>(t.raw_data());
  if constexpr (std::endian::native == std::endian::little) {
    sink(bytes, n);
  } else {
    std::vector<uint8_t> copy(bytes, bytes + n);
    if (element_size(t.dtype()) == 8) swap_bytes_in_place<uint64_t>(copy.data(), copy.size() / 8);
    else swap_bytes_in_place<uint32_t>(copy.data(), copy.size() / 4);
    sink(copy.data(), n);
  }
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

std::string errno_text(int err) { return err ? std::strerror(err) : "unknown error"; }

std::string temp_path_for(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  std::string suffix = ".tmp";
#ifdef MG_SAFETENSORS_POSIX
  suffix += "." + std::to_string(static_cast<long long>(::getpid()));
#endif
  suffix += "." + std::to_string(counter.fetch_add(1));
  return path + suffix;
}

}  // namespace

std::string serialize_safetensors(const TensorDict& tensors, const std::map<std::string, std::string>& metadata) {
  WritePlan plan = plan_write("serialize_safetensors", tensors, metadata);
  std::string out = std::move(plan.prefix);
  for (const Tensor& t : plan.tensors)
    emit_tensor_bytes(t, [&](const uint8_t* p, std::size_t n) { out.append(reinterpret_cast<const char*>(p), n); });
  return out;
}

void save_safetensors(const std::string& path, const TensorDict& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const WritePlan plan = plan_write("save_safetensors", tensors, metadata);
  const std::string tmp = temp_path_for(path);
  std::FILE* raw = std::fopen(tmp.c_str(), "wb");
  MG_CHECK(raw != nullptr, "save_safetensors: cannot write '", path, "' (creating '", tmp, "': ", errno_text(errno),
           ")");
  FilePtr file(raw);
  auto fail = [&](const char* step) {
    const int err = errno;
    file.reset();
    std::remove(tmp.c_str());
    MG_FAIL("save_safetensors: cannot write '", path, "' (", step, " '", tmp, "': ", errno_text(err), ")");
  };
  auto write = [&](const void* p, std::size_t n) {
    if (std::fwrite(p, 1, n, file.get()) != n) fail("writing");
  };
  write(plan.prefix.data(), plan.prefix.size());
  for (const Tensor& t : plan.tensors) emit_tensor_bytes(t, [&](const uint8_t* p, std::size_t n) { write(p, n); });
  if (std::fflush(file.get()) != 0) fail("flushing");
#ifdef MG_SAFETENSORS_POSIX
  // Without this a power loss can leave the renamed file empty on some file systems.
  if (::fsync(::fileno(file.get())) != 0) fail("syncing");
#endif
  if (std::fclose(file.release()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    MG_FAIL("save_safetensors: cannot write '", path, "' (closing '", tmp, "': ", errno_text(err), ")");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    MG_FAIL("save_safetensors: cannot write '", path, "' (renaming '", tmp, "': ", ec.message(), ")");
  }
}

SafetensorsFile parse_safetensors(const uint8_t* data, std::size_t size, const std::string& source) {
  const std::string where = "safetensors " + in_quotes(source);
  static constexpr uint8_t kNoBytes[8] = {};
  const Prelude p = check_prelude(where, size >= 8 ? data : kNoBytes, size);
  const auto* header_begin = reinterpret_cast<const char*>(data + 8);
  Header header = parse_header(where, std::string_view(header_begin, p.header_size), p.data_size);
  const uint8_t* cursor = data + 8 + p.header_size;
  return materialize(std::move(header), [&](std::size_t n, uint8_t* dst) {
    std::memcpy(dst, cursor, n);
    cursor += n;
  });
}

SafetensorsFile load_safetensors(const std::string& path) {
  namespace fs = std::filesystem;
  const std::string where = "load_safetensors " + in_quotes(path);
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  MG_CHECK(!ec || ec == std::errc::no_such_file_or_directory, where, ": ", ec.message());
  MG_CHECK(fs::exists(status), where, ": no such file");
  MG_CHECK(fs::is_regular_file(status), where, ": not a regular file");
  const uint64_t file_size = fs::file_size(path, ec);
  MG_CHECK(!ec, where, ": cannot read its size: ", ec.message());

  std::FILE* raw = std::fopen(path.c_str(), "rb");
  MG_CHECK(raw != nullptr, where, ": cannot open: ", errno_text(errno));
  FilePtr file(raw);
  auto read = [&](std::size_t n, void* dst) {
    if (n > 0 && std::fread(dst, 1, n, file.get()) != n)
      MG_FAIL(where, ": file ended early or could not be read (was it modified while loading?)");
  };
  uint8_t first8[8] = {};
  if (file_size >= 8) read(8, first8);
  const Prelude p = check_prelude(where, first8, file_size);
  std::string text(static_cast<std::size_t>(p.header_size), '\0');
  read(text.size(), text.data());
  Header header = parse_header(where, text, p.data_size);
  text = std::string();
  return materialize(std::move(header), [&](std::size_t n, uint8_t* dst) { read(n, dst); });
}

}  // namespace mg::nn
