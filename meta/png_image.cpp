#include "png_image.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <system_error>

#include "../tensor/error.h"

namespace mg::meta {

namespace {

// Bigger than any image we would sample from, small enough that a corrupt header cannot make us
// allocate gigabytes.
constexpr png_uint_32 kMaxSide = 1u << 14;

std::string message_of(const png_image& image) {
  return image.message[0] != '\0' ? std::string(image.message) : std::string("unknown libpng error");
}

// Releases libpng's state on every path out, including the throwing ones.
struct ImageGuard {
  png_image* image;
  ~ImageGuard() { png_image_free(image); }
};

// Weights of the area-averaging resize along one axis: out[o] = sum_k weight[o][k] in[first[o] + k],
// stored densely with `taps` weights per output (zero-padded) so the loops stay simple and fast.
struct AxisWeights {
  int64_t taps = 0;
  std::vector<int64_t> first;
  std::vector<double> weight;  // out * taps
};

AxisWeights area_weights(int64_t in, int64_t out) {
  AxisWeights w;
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  w.taps = static_cast<int64_t>(std::ceil(scale)) + 1;
  w.first.resize(static_cast<std::size_t>(out));
  w.weight.assign(static_cast<std::size_t>(out * w.taps), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    const double lo = static_cast<double>(o) * scale;
    const double hi = static_cast<double>(o + 1) * scale;
    // Clamped so that first + taps stays inside the input; the extra taps get zero weight.
    const int64_t begin = std::clamp<int64_t>(static_cast<int64_t>(std::floor(lo)), 0, std::max<int64_t>(0, in - w.taps));
    w.first[static_cast<std::size_t>(o)] = begin;
    for (int64_t k = 0; k < w.taps && begin + k < in; ++k) {
      const auto i = static_cast<double>(begin + k);
      const double covered = std::min(hi, i + 1.0) - std::max(lo, i);
      w.weight[static_cast<std::size_t>(o * w.taps + k)] = std::max(0.0, covered) / scale;
    }
  }
  return w;
}

}  // namespace

GrayImage decode_png_gray(const void* data, std::size_t size, std::string_view name) {
  MG_CHECK(size >= 8 && png_sig_cmp(static_cast<png_const_bytep>(data), 0, 8) == 0, "png: '", name,
           "' is not a PNG file (", size < 8 ? "shorter than the 8-byte signature" : "bad signature", ")");
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  ImageGuard guard{&image};
  if (png_image_begin_read_from_memory(&image, data, size) == 0)
    MG_FAIL("png: cannot read '", name, "': ", message_of(image));
  MG_CHECK(image.width > 0 && image.height > 0 && image.width <= kMaxSide && image.height <= kMaxSide, "png: '", name,
           "' has an unsupported size ", image.width, "x", image.height, " (each side must be 1..", kMaxSide, ")");
  image.format = PNG_FORMAT_GRAY;
  GrayImage out;
  out.width = image.width;
  out.height = image.height;
  out.pixels.assign(PNG_IMAGE_SIZE(image), 255);
  const png_color white{255, 255, 255};
  if (png_image_finish_read(&image, &white, out.pixels.data(), 0, nullptr) == 0)
    MG_FAIL("png: cannot decode '", name, "' (corrupt or truncated?): ", message_of(image));
  return out;
}

GrayImage read_png_gray(const std::filesystem::path& path) {
  std::error_code ec;
  MG_CHECK(std::filesystem::is_regular_file(path, ec), "png: '", path.string(), "' does not exist or is not a file");
  const auto size = std::filesystem::file_size(path, ec);
  MG_CHECK(!ec, "png: cannot read the size of '", path.string(), "': ", ec.message());
  std::ifstream in(path, std::ios::binary);
  MG_CHECK(in.good(), "png: cannot open '", path.string(), "'");
  std::vector<char> bytes(static_cast<std::size_t>(size));
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  MG_CHECK(static_cast<uintmax_t>(in.gcount()) == size, "png: error while reading '", path.string(), "'");
  return decode_png_gray(bytes.data(), bytes.size(), path.string());
}

void write_png_gray(const std::filesystem::path& path, const GrayImage& image) {
  MG_CHECK(image.width > 0 && image.height > 0 && image.width <= kMaxSide && image.height <= kMaxSide &&
               image.pixels.size() == static_cast<std::size_t>(image.width * image.height),
           "png: cannot write '", path.string(), "': a ", image.width, "x", image.height, " image needs ",
           image.width * image.height, " pixels, got ", image.pixels.size());
  png_image header{};
  header.version = PNG_IMAGE_VERSION;
  header.width = static_cast<png_uint_32>(image.width);
  header.height = static_cast<png_uint_32>(image.height);
  header.format = PNG_FORMAT_GRAY;
  ImageGuard guard{&header};
  png_alloc_size_t size = 0;
  if (png_image_write_to_memory(&header, nullptr, &size, 0, image.pixels.data(), 0, nullptr) == 0)
    MG_FAIL("png: cannot encode '", path.string(), "': ", message_of(header));
  std::vector<unsigned char> bytes(size);
  if (png_image_write_to_memory(&header, bytes.data(), &size, 0, image.pixels.data(), 0, nullptr) == 0)
    MG_FAIL("png: cannot encode '", path.string(), "': ", message_of(header));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  MG_CHECK(out.good(), "png: cannot create '", path.string(), "'");
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(size));
  out.close();
  MG_CHECK(!out.fail(), "png: error while writing '", path.string(), "'");
}

std::vector<float> resize_area(const GrayImage& image, int64_t width, int64_t height) {
  MG_CHECK(width > 0 && height > 0, "resize_area: target size must be positive, got ", width, "x", height);
  MG_CHECK(image.width > 0 && image.height > 0 &&
               image.pixels.size() == static_cast<std::size_t>(image.width * image.height),
           "resize_area: malformed ", image.width, "x", image.height, " image with ", image.pixels.size(), " pixels");
  const AxisWeights wx = area_weights(image.width, width);
  const AxisWeights wy = area_weights(image.height, height);
  const int64_t in_w = image.width;
  const int64_t in_h = image.height;
  // Rows first (in_h x width), then columns.
  std::vector<double> rows(static_cast<std::size_t>(in_h * width));
  const uint8_t* src = image.pixels.data();
  const double* wxs = wx.weight.data();
  const int64_t taps_x = std::min(wx.taps, in_w);
  for (int64_t r = 0; r < in_h; ++r) {
    const uint8_t* line = src + r * in_w;
    double* dst = rows.data() + r * width;
    for (int64_t c = 0; c < width; ++c) {
      const uint8_t* p = line + wx.first[static_cast<std::size_t>(c)];
      const double* w = wxs + c * wx.taps;
      double acc = 0.0;
      for (int64_t k = 0; k < taps_x; ++k) acc += w[k] * p[k];
      dst[c] = acc;
    }
  }
  std::vector<float> out(static_cast<std::size_t>(height * width));
  const int64_t taps_y = std::min(wy.taps, in_h);
  for (int64_t r = 0; r < height; ++r) {
    const double* base = rows.data() + wy.first[static_cast<std::size_t>(r)] * width;
    const double* w = wy.weight.data() + r * wy.taps;
    float* dst = out.data() + r * width;
    for (int64_t c = 0; c < width; ++c) {
      double acc = 0.0;
      for (int64_t k = 0; k < taps_y; ++k) acc += w[k] * base[k * width + c];
      dst[c] = static_cast<float>(std::clamp(acc / 255.0, 0.0, 1.0));
    }
  }
  return out;
}

}  // namespace mg::meta
