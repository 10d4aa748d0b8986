#pragma once
// 8-bit grayscale images: PNG decoding and encoding through libpng, and the area-averaging resize
// the Omniglot sampler uses (105x105 -> 28x28).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>
#include <vector>

namespace mg::meta {

// Row-major, 0 = black, 255 = white (the PNG's own values: nothing is inverted here).
struct GrayImage {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> pixels;

  uint8_t at(int64_t row, int64_t col) const {
    return pixels[static_cast<std::size_t>(row * width + col)];
  }
};

// Any PNG (1/2/4/8/16-bit gray, palette, RGB, with or without alpha) as 8-bit gray; colour is
// converted by libpng's sRGB luminance weights and alpha is composited onto white. Throws
// mg::Error naming the file: missing, unreadable, not a PNG, or corrupt.
GrayImage read_png_gray(const std::filesystem::path& path);
// The same from bytes in memory; name is what error messages call them.
GrayImage decode_png_gray(const void* data, std::size_t size, std::string_view name);

// Writes an 8-bit gray PNG (for test fixtures and for looking at what a sampler produced).
void write_png_gray(const std::filesystem::path& path, const GrayImage& image);

// Area averaging (a box filter with exact coverage, as OpenCV's INTER_AREA when shrinking): output pixel (r, c) is the mean of the input
// over the rectangle it covers, [r * h_in / h_out, (r + 1) * h_in / h_out) by the same in x, with
// partly covered input pixels weighted by the covered fraction. Values are scaled to [0, 1]
// (pixel / 255). Row-major, height x width floats. Each image's mean is preserved exactly (up to
// rounding), which is what makes it the honest choice for shrinking thin pen strokes.
std::vector<float> resize_area(const GrayImage& image, int64_t width, int64_t height);

}  // namespace mg::meta
