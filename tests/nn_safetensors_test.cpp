// safetensors I/O: bit-exact round trips, the byte layout the spec fixes, files written by
// PyTorch (tests/fixtures/gen_safetensors_fixtures.py), and every malformed file of
// tests/fixtures/bad_safetensors/ rejected with a message naming the file and the problem.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../nn/safetensors.h"
#include "../tensor/creation.h"

namespace {

using namespace mg;
using namespace mg::nn;
namespace fs = std::filesystem;

const fs::path kFixtures = MG_FIXTURES_DIR;

// The bytes of t's elements in row-major order (compares NaN payloads and -0 exactly).
std::vector<uint8_t> element_bytes(const Tensor& t) {
  const Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.raw_data());
  return std::vector<uint8_t>(p, p + c.numel() * static_cast<int64_t>(element_size(c.dtype())));
}

void check_same_bits(const Tensor& expected, const Tensor& actual) {
  REQUIRE(actual.defined());
  CHECK(actual.dtype() == expected.dtype());
  CHECK(actual.shape() == expected.shape());
  CHECK(actual.is_contiguous());
  CHECK(element_bytes(actual) == element_bytes(expected));
}

SafetensorsFile parse(const std::string& bytes, const std::string& source = "<memory>") {
  return parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), source);
}

// A file with the given header text (used verbatim) and data section.
std::string make_file(std::string_view header, std::string_view data = {}) {
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  out += header;
  out += data;
  return out;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs fn and checks it throws mg::Error (not another exception) whose message contains each part.
void check_error(const std::function<void()>& fn, std::initializer_list<std::string_view> parts) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string message = e.what();
    INFO("message: " << message);
    for (std::string_view part : parts) CHECK_MESSAGE(message.find(part) != std::string::npos, "missing: " << part);
    return;
  } catch (const std::exception& e) {
    FAIL("threw a non-mg::Error exception: " << e.what());
    return;
  }
  FAIL("did not throw; expected an error containing " << *parts.begin());
}

// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    const auto tick = std::chrono::steady_clock::now().time_since_epoch().count();
    path = fs::temp_directory_path() / ("mg_safetensors_test_" + std::to_string(tick));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

// Tensors of every dtype and geometry the writer accepts, including the awkward ones.
TensorDict awkward_tensors() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  TensorDict d;
  d.insert("f32", mg::tensor(std::vector<double>{1.5, -0.0, 3.0e38, 1e-45, nan, -inf}, Shape{2, 3}, kFloat32));
  d.insert("f64", mg::tensor(std::vector<double>{1.0 / 3.0, -2.5e300, 5e-324, inf}, Shape{2, 2}, kFloat64));
  d.insert("i64", mg::tensor(std::vector<int64_t>{std::numeric_limits<int64_t>::min(),
                                                  std::numeric_limits<int64_t>::max(), 0, -1},
                             Shape{4}));
  d.insert("scalar_f32", mg::scalar(-2.75));
  d.insert("scalar_i64", mg::scalar(7, kInt64));
  d.insert("empty_f32", mg::zeros({0, 3}));
  d.insert("empty_f64", mg::zeros({2, 0, 4}, kFloat64));
  d.insert("empty_i64", mg::zeros({0}, kInt64));
  // Non-contiguous inputs: written contiguous.
  const Tensor base = mg::arange(0, 24, 1, kFloat64).reshape({2, 3, 4});
  d.insert("transposed", base.transpose(0, 2));
  d.insert("strided", base.slice(2, 0, 4, 2));
  d.insert("expanded", mg::tensor({1.0, 2.0, 3.0}, kFloat32).reshape({3, 1}).expand({3, 4}));
  d.insert("offset_view", mg::arange(0, 10, 1, kInt64).narrow(0, 3, 5));
  return d;
}

uint64_t header_size(const std::string& file) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(file[i])) << (8 * i);
  return n;
}

}  // namespace

TEST_CASE("safetensors: bit-exact round trip of f32, f64, i64 incl. 0-d, empty and non-contiguous tensors") {
  const TensorDict d = awkward_tensors();
  REQUIRE_FALSE(d.at("transposed").is_contiguous());
  REQUIRE_FALSE(d.at("strided").is_contiguous());
  REQUIRE_FALSE(d.at("expanded").is_contiguous());

  SUBCASE("in memory") {
    const SafetensorsFile f = parse(serialize_safetensors(d));
    CHECK(f.tensors.size() == d.size());
    CHECK(f.metadata.empty());
    for (const auto& [name, t] : d) {
      INFO(name);
      check_same_bits(t, f.tensors.at(name));
    }
  }
  SUBCASE("through a file, identical to the in-memory bytes") {
    TempDir dir;
    const fs::path path = dir.path / "weights.safetensors";
    save_safetensors(path.string(), d);
    CHECK(read_file(path) == serialize_safetensors(d));
    const SafetensorsFile f = load_safetensors(path.string());
    for (const auto& [name, t] : d) {
      INFO(name);
      check_same_bits(t, f.tensors.at(name));
    }
    CHECK(dir.entries() == std::vector<std::string>{"weights.safetensors"});  // no temporary left behind
  }
  SUBCASE("an empty dict") {
    const std::string bytes = serialize_safetensors({});
    CHECK(bytes == make_file("{}      "));
    CHECK(parse(bytes).tensors.empty());
  }
}

TEST_CASE("safetensors: metadata and names round trip, including characters JSON must escape") {
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"quote\"back\\slash", "tab\tnewline\ncontrol\x01"},
      {"unicode h\xC3\xA9llo \xE2\x9C\x93 \xF0\x9D\x9C\x83", ""},
      {"", "empty key"},
  };
  TensorDict d;
  d.insert("encoder.layers.0.attn.q_proj.weight", mg::ones({2, 2}));
  d.insert("we\"ird\\name\x7f\n", mg::zeros({1}));
  d.insert("\xE2\x9C\x93", mg::full({1}, 3.0, kFloat64));
  d.insert("", mg::scalar(1.0));
  const SafetensorsFile f = parse(serialize_safetensors(d, metadata));
  CHECK(f.metadata == metadata);
  REQUIRE(f.tensors.size() == d.size());
  for (const auto& [name, t] : d) check_same_bits(t, f.tensors.at(name));
}

TEST_CASE("safetensors: the byte layout the spec fixes") {
  TensorDict d;
  d.insert("b", mg::ones({3}));                   // F32, 12 bytes
  d.insert("a", mg::ones({1}));                   // F32, 4 bytes
  d.insert("c", mg::ones({2}, kFloat64));         // F64
  d.insert("d", mg::zeros({1}, kInt64));          // I64
  const std::string bytes = serialize_safetensors(d, {{"k", "v"}});
  const uint64_t n = header_size(bytes);
  CHECK(n % 8 == 0);  // so the data section starts 8-byte aligned
  CHECK(bytes.size() == 8 + n + 8 + 16 + 4 + 12);
  const std::string header = bytes.substr(8, n);
  // The reference order: larger element types first (each tensor aligned to its element size),
  // then names; "__metadata__" first; padding is spaces.
  CHECK(header ==
        "{\"__metadata__\":{\"k\":\"v\"},"
        "\"d\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
        "\"c\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[8,24]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[24,28]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[28,40]}}" +
            std::string((8 - (header.find_last_of('}') + 1) % 8) % 8, ' '));
  // Little-endian float32 1.0 at the last tensor.
  CHECK(bytes.substr(bytes.size() - 4) == std::string("\x00\x00\x80\x3f", 4));
  // Loading gives the tensors in data order.
  CHECK(parse(bytes).tensors.keys() == std::vector<std::string>{"d", "c", "a", "b"});
}

TEST_CASE("safetensors: the reference implementation's serialization examples, byte for byte") {
  const Tensor six = mg::arange(0, 6, 1, kFloat32);
  std::string data;
  for (float v : {0.f, 1.f, 2.f, 3.f, 4.f, 5.f})
    for (int i = 0; i < 4; ++i) data += static_cast<char>((std::bit_cast<uint32_t>(v) >> (8 * i)) & 0xFF);
  CHECK(serialize_safetensors({{"attn.0", six.reshape({1, 2, 3})}}) ==
        make_file(R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})", data));
  CHECK(serialize_safetensors({{"attn0", six.reshape({1, 1, 2, 3})}}) ==
        make_file(R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})"
                  "       ",
                  data));
  CHECK(serialize_safetensors({}, {{"framework", "pt"}}) == make_file(R"({"__metadata__":{"framework":"pt"}})"
                                                                      "     "));
}

TEST_CASE("safetensors: reads files written from Python (torch 1.13, numpy)") {
  const SafetensorsFile f = load_safetensors((kFixtures / "torch_dtypes.safetensors").string());
  const TensorDict& t = f.tensors;
  CHECK(f.metadata.at("format") == "pt");
  CHECK(f.metadata.at("note") == "h\xC3\xA9llo \xE2\x9C\x93 \xF0\x9D\x9C\x83");  // decoded from \u escapes

  SUBCASE("native dtypes as themselves") {
    CHECK(t.at("f32").dtype() == kFloat32);
    CHECK(t.at("f32").shape() == Shape{2, 3});
    const std::vector<float> f32 = t.at("f32").to_vector<float>();
    CHECK(f32[0] == 0.5f);
    CHECK(f32[1] == -1.25f);
    CHECK(std::signbit(f32[4]));
    CHECK(std::isnan(f32[5]));
    CHECK(t.at("f64").dtype() == kFloat64);
    CHECK(t.at("f64").to_vector<double>()[0] == 1.0 / 3.0);
    CHECK(t.at("f64").to_vector<double>()[2] == 5e-324);
    CHECK(t.at("i64").dtype() == kInt64);
    const int64_t* i64 = t.at("i64").data_ptr<int64_t>();
    CHECK(i64[0] == std::numeric_limits<int64_t>::min());
    CHECK(i64[1] == std::numeric_limits<int64_t>::max());
    CHECK(i64[3] == -1);
  }
  SUBCASE("0-d, empty and (in torch) non-contiguous tensors") {
    CHECK(t.at("scalar").dim() == 0);
    CHECK(t.at("scalar").item<float>() == 2.5f);
    CHECK(t.at("empty").shape() == Shape{0, 3});
    CHECK(t.at("transposed").shape() == Shape{3, 2});
    CHECK(t.at("transposed").to_vector<double>() == std::vector<double>{0, 3, 1, 4, 2, 5});
  }
  SUBCASE("F16, BF16 to float32 and the integer types to int64, bit for bit as torch converts them") {
    for (const char* name : {"f16", "bf16", "i32", "i16", "i8", "u8", "bool"}) {
      INFO(name);
      check_same_bits(t.at(std::string(name) + "_expected"), t.at(name));
    }
    CHECK(t.at("f16").shape() == Shape{2, 5});
    CHECK(t.at("u8").to_vector<int64_t>() == std::vector<int64_t>{0, 255, 128, 1});
    CHECK(t.at("bool").to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0, 1, 1});
  }
}

TEST_CASE("safetensors: writes the same bytes as the Python writer") {
  TensorDict d;
  d.insert("b", mg::tensor({1.5, -2.0}, kFloat32));
  d.insert("a", mg::tensor(std::vector<double>{-0.25, -0.125, 0.0, 0.125, 0.25, 0.375}, Shape{2, 3}, kFloat32));
  CHECK(serialize_safetensors(d) == read_file(kFixtures / "python_f32.safetensors"));
}

TEST_CASE("safetensors: every float16 bit pattern converts exactly") {
  std::string data;
  for (uint32_t bits = 0; bits < 65536; ++bits) data += {static_cast<char>(bits & 0xFF), static_cast<char>(bits >> 8)};
  const std::string file = make_file(R"({"h":{"dtype":"F16","shape":[65536],"data_offsets":[0,131072]}})", data);
  const Tensor h = parse(file).tensors.at("h");
  REQUIRE(h.dtype() == kFloat32);
  const float* v = h.data_ptr<float>();
  int mismatches = 0;
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const int sign = bits >> 15, exp = (bits >> 10) & 0x1F, mant = bits & 0x3FF;
    float expected;
    if (exp == 0) expected = std::ldexp(static_cast<float>(mant), -24);
    else if (exp == 31) expected = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    else expected = std::ldexp(static_cast<float>(1024 + mant), exp - 25);
    if (sign) expected = -expected;
    const bool ok = std::isnan(expected) ? std::isnan(v[bits]) && std::signbit(v[bits]) == (sign != 0)
                                         : std::bit_cast<uint32_t>(v[bits]) == std::bit_cast<uint32_t>(expected);
    mismatches += !ok;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("safetensors: valid files beyond the writer's own") {
  SUBCASE("unpadded header, JSON whitespace, tensors listed out of offset order, unknown fields ignored") {
    const std::string file = make_file(
        " {\n \"b\" : {\"data_offsets\":[4,8],\"shape\":[1],\"dtype\":\"F32\",\"extra\":{\"x\":[null,true]}},\n"
        "  \"a\":{\"dtype\":\"I8\",\"shape\":[2,2],\"data_offsets\":[0,4]}, \"__metadata__\":{}}\t\r\n",
        std::string("\x01\xff\x7f\x80", 4) + std::string("\x00\x00\x20\xc1", 4));
    const SafetensorsFile f = parse(file);
    CHECK(f.tensors.keys() == std::vector<std::string>{"a", "b"});  // data order
    CHECK(f.tensors.at("a").to_vector<int64_t>() == std::vector<int64_t>{1, -1, 127, -128});
    CHECK(f.tensors.at("b").to_vector<double>() == std::vector<double>{-10.0});
    CHECK(f.metadata.empty());
  }
  SUBCASE("zero-element tensors anywhere, several at the same offset") {
    const std::string file = make_file(
        R"({"z1":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"x":{"dtype":"U16","shape":[2],"data_offsets":[0,4]},)"
        R"("z2":{"dtype":"F64","shape":[3,0],"data_offsets":[4,4]},"z3":{"dtype":"BF16","shape":[0,7],"data_offsets":[4,4]}})",
        std::string("\xff\xff\x01\x00", 4));
    const SafetensorsFile f = parse(file);
    CHECK(f.tensors.size() == 4);
    CHECK(f.tensors.at("x").to_vector<int64_t>() == std::vector<int64_t>{65535, 1});
    CHECK(f.tensors.at("z2").shape() == Shape{3, 0});
    CHECK(f.tensors.at("z3").dtype() == kFloat32);
  }
  SUBCASE("only zero-element tensors and an empty data section") {
    const SafetensorsFile f = parse(make_file(R"({"z":{"dtype":"I64","shape":[0],"data_offsets":[0,0]}})"));
    CHECK(f.tensors.at("z").numel() == 0);
  }
}

// Each file of tests/fixtures/bad_safetensors/ (written by generate.py there) and a part of the
// message the loader must give; a file without an entry here fails the test.
TEST_CASE("safetensors: every file of the bad-file corpus is rejected with a message naming the problem") {
  const std::map<std::string, std::string> expected = {
      {"empty_file", "too short"},
      {"shorter_than_prefix", "too short"},
      {"header_past_end", "runs past the end of the file"},
      {"header_length_huge", "exceeds the limit"},
      {"header_length_max_u64", "exceeds the limit"},
      {"json_empty", "truncated"},
      {"json_truncated", "truncated"},
      {"json_top_level_array", "header must be a JSON object"},
      {"json_top_level_string", "header must be a JSON object"},
      {"json_trailing_garbage", "unexpected characters after the top-level value"},
      {"json_trailing_comma", "trailing ',' before '}'"},
      {"json_bad_escape", "invalid escape"},
      {"json_lone_high_surrogate", "unpaired high surrogate"},
      {"json_lone_low_surrogate", "unpaired low surrogate"},
      {"json_invalid_utf8", "invalid UTF-8"},
      {"json_overlong_utf8", "invalid UTF-8"},
      {"json_control_char_in_string", "control character"},
      {"json_leading_zero", "leading zero"},
      {"json_nan_literal", "unexpected character"},
      {"json_single_quotes", "expected a string key"},
      {"json_deep_nesting", "nesting deeper than 64"},
      {"json_deep_nesting_objects", "nesting deeper than 64"},
      {"json_duplicate_tensor_name", "duplicate key \"w\""},
      {"json_duplicate_field", "duplicate key \"dtype\""},
      {"entry_not_object", "entry must be an object"},
      {"missing_dtype", "missing \"dtype\""},
      {"missing_shape", "missing \"shape\""},
      {"missing_data_offsets", "missing \"data_offsets\""},
      {"dtype_not_string", "\"dtype\" must be a string"},
      {"unknown_dtype", "unsupported dtype \"F128\""},
      {"unsupported_dtype_f8", "unsupported dtype \"F8_E4M3\""},
      {"shape_not_array", "\"shape\" must be an array"},
      {"shape_dim_string", "shape dims must be non-negative integers"},
      {"shape_dim_negative", "negative shape dim -1"},
      {"shape_dim_fraction", "shape dim 1.5 is not an integer"},
      {"shape_dim_exponent", "shape dim 1e0 is not an integer"},
      {"shape_dim_beyond_u64", "is too large"},
      {"shape_huge", "too many elements"},
      {"shape_huge_zero_elements", "too many elements"},
      {"shape_too_many_dims", "more than 64 dims"},
      {"offsets_not_array", "\"data_offsets\" must be two non-negative integers"},
      {"offsets_one_number", "\"data_offsets\" must be two non-negative integers"},
      {"offsets_three_numbers", "\"data_offsets\" must be two non-negative integers"},
      {"offsets_negative", "\"data_offsets\" must be two non-negative integers"},
      {"offsets_fraction", "\"data_offsets\" must be two non-negative integers"},
      {"offsets_beyond_u64", "\"data_offsets\" must be two non-negative integers"},
      {"offsets_begin_after_end", "begin > end"},
      {"offsets_past_data", "run past the end of the data section"},
      {"offsets_size_mismatch", "hold 8 bytes but shape [3] of F32 needs 12"},
      {"overlap", "overlaps tensor 'a'"},
      {"gap", "gap in the data section: bytes [4,8)"},
      {"trailing_data", "cover only 4"},
      {"data_without_tensors", "cover only 0"},
      {"metadata_not_object", "\"__metadata__\" must be an object"},
      {"metadata_value_number", "\"__metadata__\" must map strings to strings, but 'epoch' is a number"},
      {"metadata_value_null", "\"__metadata__\" must map strings to strings, but 'epoch' is null"},
  };
  const fs::path dir = kFixtures / "bad_safetensors";
  std::set<std::string> seen;
  for (const auto& file : fs::directory_iterator(dir)) {
    if (file.path().extension() != ".safetensors") continue;
    const std::string stem = file.path().stem().string();
    const std::string path = file.path().string();
    INFO(stem);
    seen.insert(stem);
    const auto it = expected.find(stem);
    if (it == expected.end()) {
      FAIL_CHECK("no expected message for " << path);
      continue;
    }
    check_error([&] { load_safetensors(path); }, {it->second, path});
    const std::string bytes = read_file(file.path());
    check_error([&] { parse(bytes, stem); }, {it->second, "'" + stem + "'"});
  }
  for (const auto& [stem, message] : expected) CHECK_MESSAGE(seen.count(stem), "missing corpus file " << stem);
}

TEST_CASE("safetensors: a huge shape is rejected before anything is allocated") {
  // 2^80 elements: nothing could hold them, so the check must come before Tensor::empty.
  check_error([] { parse(make_file(R"({"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}})", "abcd")); },
              {"too many elements", "shape"});
  // 2^62 float32 elements = 2^64 bytes: the byte count would wrap in uint64.
  check_error([] { parse(make_file(R"({"w":{"dtype":"F32","shape":[4294967296,1073741824],"data_offsets":[0,0]}})")); },
              {"too many elements"});
  // Representable, but claims far more bytes than the file has.
  check_error([] { parse(make_file(R"({"w":{"dtype":"F64","shape":[1048576,1048576],"data_offsets":[0,8796093022208]}})", "12345678")); },
              {"run past the end of the data section"});
}

TEST_CASE("safetensors: truncated and corrupted files never crash or read past the buffer") {
  TensorDict d;
  d.insert("w", mg::arange(0, 6, 1, kFloat32).reshape({2, 3}));
  d.insert("i", mg::arange(0, 3, 1, kInt64));
  const std::string good = serialize_safetensors(d, {{"format", "pt"}});
  // Each prefix gets its own exactly-sized heap copy, so a sanitizer build catches any over-read.
  for (std::size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> prefix(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    INFO("prefix of " << n << " bytes");
    CHECK_THROWS_AS(parse_safetensors(prefix.data(), prefix.size()), Error);
  }
  int parsed = 0, rejected = 0;
  for (std::size_t pos = 0; pos < good.size(); ++pos) {
    for (uint8_t value : {0x00, 0x01, 0x20, 0x22, 0x2c, 0x30, 0x39, 0x5b, 0x5c, 0x7b, 0x7d, 0x80, 0xff}) {
      std::vector<uint8_t> bytes(good.begin(), good.end());
      bytes[pos] = value;
      try {
        parse_safetensors(bytes.data(), bytes.size());
        ++parsed;
      } catch (const Error&) {
        ++rejected;
      }
    }
  }
  CHECK(parsed > 0);  // data bytes may take any value
  CHECK(rejected > 0);
}

TEST_CASE("safetensors: file errors name the path") {
  TempDir dir;
  check_error([&] { load_safetensors((dir.path / "absent.safetensors").string()); },
              {"absent.safetensors", "no such file"});
  check_error([&] { load_safetensors(dir.path.string()); }, {dir.path.string(), "not a regular file"});

  const TensorDict d = {{"w", mg::ones({2})}};
  const fs::path unwritable = dir.path / "no_such_dir" / "w.safetensors";
  check_error([&] { save_safetensors(unwritable.string(), d); }, {"save_safetensors", unwritable.string()});

  // A failed save leaves an existing file untouched, and no temporary behind.
  const fs::path path = dir.path / "w.safetensors";
  save_safetensors(path.string(), d);
  const std::string before = read_file(path);
  TensorDict bad = d;
  bad.insert("broken", Tensor());
  check_error([&] { save_safetensors(path.string(), bad); }, {"'broken' is undefined"});
  CHECK(read_file(path) == before);
  // Overwriting replaces the file.
  save_safetensors(path.string(), {{"w", mg::zeros({3}, kFloat64)}});
  check_same_bits(mg::zeros({3}, kFloat64), load_safetensors(path.string()).tensors.at("w"));
  CHECK(dir.entries() == std::vector<std::string>{"w.safetensors"});
}

TEST_CASE("safetensors: what the writer refuses") {
  check_error([] { serialize_safetensors({{"__metadata__", mg::ones({1})}}); }, {"\"__metadata__\" is reserved"});
  check_error([] { serialize_safetensors({{std::string("bad\xff"), mg::ones({1})}}); }, {"not valid UTF-8"});
  check_error([] { serialize_safetensors({{"w", mg::ones({1})}}, {{"k", std::string("\xc0\xaf")}}); },
              {"metadata entry 'k' is not valid UTF-8"});
}
