// im2col / col2im for 2-D windows over NCHW tensors (unfold / fold, convolution, pooling).
//
// Work is split over the N*C input planes: im2col writes each plane's C-slice of rows, col2im
// accumulates into its own plane, so threads never touch the same element and col2im needs no
// atomics. Within a plane, every (kernel row, kernel column) pair gives one row of cols, filled
// a line of output positions at a time. The positions of a line whose input column falls inside
// x form one interval, computed up front, so the inner loop has no bounds checks and is a plain
// copy (or add) when the stride is 1.
#include <algorithm>
#include <cstdint>

#include "cpu_kernels.h"
#include "parallel.h"

namespace mg::cpu {
namespace {

// The output positions o in [0, count) whose input coordinate o * stride + start lies in
// [0, size), as a half-open interval [lo, hi).
struct Span {
  int64_t lo, hi;
};
Span valid_span(int64_t start, int64_t stride, int64_t size, int64_t count) {
  const int64_t lo = start >= 0 ? 0 : (-start + stride - 1) / stride;
  const int64_t hi = size - start <= 0 ? 0 : (size - start + stride - 1) / stride;
  const int64_t l = std::min(lo, count);
  return {l, std::clamp(hi, l, count)};
}

// A stride-1 window whose output is the input's size ("same" padding) over a contiguous plane:
// each row of cols is the plane shifted by (di, dj), so it is one contiguous copy, then padding
// written over the rows and columns that fell outside the plane.
template <typename T>
void same_size_rows(const T* plane, int64_t H, int64_t W, const Window2d& w, T pad, T* row) {
  const int64_t area = H * W;
  for (int64_t i = 0; i < w.kh; ++i) {
    const int64_t di = i * w.dh - w.ph;
    const int64_t y_lo = std::clamp<int64_t>(-di, 0, H), y_hi = std::clamp<int64_t>(H - di, y_lo, H);
    for (int64_t j = 0; j < w.kw; ++j, row += area) {
      const int64_t dj = j * w.dw - w.pw;
      // Entries [y_lo * W, y_hi * W) read plane[e + di * W + dj]; those outside the plane are
      // in padding columns, rewritten below.
      const int64_t first = std::max<int64_t>(y_lo * W, -(di * W + dj));
      const int64_t last = std::min<int64_t>(y_hi * W, area - (di * W + dj));
      std::fill(row, row + y_lo * W, pad);
      if (last > first) std::copy(plane + first + di * W + dj, plane + last + di * W + dj, row + first);
      std::fill(row + y_hi * W, row + area, pad);
      // The padding columns, a column at a time: a window's few columns (one each side for a 3x3
      // kernel) as a strided store per row, where two fills per row cost more than the copy on a
      // 7x7 or 3x3 image.
      const int64_t x_lo = std::clamp<int64_t>(-dj, 0, W), x_hi = std::clamp<int64_t>(W - dj, x_lo, W);
      auto pad_column = [&](int64_t x) {
        for (int64_t y = y_lo; y < y_hi; ++y) row[y * W + x] = pad;
      };
      for (int64_t x = 0; x < x_lo; ++x) pad_column(x);
      for (int64_t x = x_hi; x < W; ++x) pad_column(x);
    }
  }
}

template <typename T>
void im2col_typed(const Tensor& x, const Window2d& w, double pad_value, const Tensor& cols) {
  const int64_t C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  const int64_t sn = x.strides()[0], sc = x.strides()[1], sy = x.strides()[2], sx = x.strides()[3];
  const int64_t oh = w.out_h(H), ow = w.out_w(W), L = oh * ow, K = w.kh * w.kw;
  const T* xp = static_cast<const T*>(x.raw_data());
  T* cp = static_cast<T*>(cols.raw_data());
  const T pad = static_cast<T>(pad_value);
  const bool same_size = w.sh == 1 && w.sw == 1 && oh == H && ow == W && sx == 1 && sy == W;
  parallel_for(x.shape()[0] * C, K * L, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const T* plane = xp + (nc / C) * sn + (nc % C) * sc;
      T* row = cp + nc * K * L;  // cols is contiguous: plane nc owns rows [nc*K, nc*K + K)
      if (same_size) {
        same_size_rows(plane, H, W, w, pad, row);
        continue;
      }
      for (int64_t i = 0; i < w.kh; ++i) {
        const int64_t y0 = i * w.dh - w.ph;
        const Span ys = valid_span(y0, w.sh, H, oh);
        for (int64_t j = 0; j < w.kw; ++j, row += L) {
          const int64_t x0 = j * w.dw - w.pw;
          const Span xs = valid_span(x0, w.sw, W, ow);
          std::fill(row, row + ys.lo * ow, pad);
          for (int64_t oy = ys.lo; oy < ys.hi; ++oy) {
            T* out = row + oy * ow;
            const T* line = plane + (oy * w.sh + y0) * sy;
            std::fill(out, out + xs.lo, pad);
            if (w.sw == 1 && sx == 1) {
              const T* src = line + (xs.lo + x0);
              for (int64_t ox = xs.lo; ox < xs.hi; ++ox) out[ox] = src[ox - xs.lo];
            } else {
              for (int64_t ox = xs.lo; ox < xs.hi; ++ox) out[ox] = line[(ox * w.sw + x0) * sx];
            }
            std::fill(out + xs.hi, out + ow, pad);
          }
          std::fill(row + ys.hi * ow, row + L, pad);
        }
      }
    }
  });
}

template <typename T>
void col2im_typed(const Tensor& cols, const Window2d& w, const Tensor& out) {
  const int64_t C = out.shape()[1], H = out.shape()[2], W = out.shape()[3];
  const int64_t s0 = cols.strides()[0], s1 = cols.strides()[1], s2 = cols.strides()[2];
  const int64_t oh = w.out_h(H), ow = w.out_w(W), L = oh * ow, K = w.kh * w.kw;
  const T* cp = static_cast<const T*>(cols.raw_data());
  T* op = static_cast<T*>(out.raw_data());
  parallel_for(out.shape()[0] * C, K * L, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      T* plane = op + nc * H * W;
      std::fill(plane, plane + H * W, T(0));
      const T* rows = cp + (nc / C) * s0 + (nc % C) * K * s1;
      for (int64_t i = 0; i < w.kh; ++i) {
        const int64_t y0 = i * w.dh - w.ph;
        const Span ys = valid_span(y0, w.sh, H, oh);
        for (int64_t j = 0; j < w.kw; ++j) {
          const T* row = rows + (i * w.kw + j) * s1;
          const int64_t x0 = j * w.dw - w.pw;
          const Span xs = valid_span(x0, w.sw, W, ow);
          for (int64_t oy = ys.lo; oy < ys.hi; ++oy) {
            T* line = plane + (oy * w.sh + y0) * W;
            const T* in = row + oy * ow * s2;
            if (w.sw == 1 && s2 == 1) {
              T* dst = line + (xs.lo + x0);
              for (int64_t ox = xs.lo; ox < xs.hi; ++ox) dst[ox - xs.lo] += in[ox];
            } else {
              for (int64_t ox = xs.lo; ox < xs.hi; ++ox) line[ox * w.sw + x0] += in[ox * s2];
            }
          }
        }
      }
    }
  });
}

}  // namespace

void im2col(const Tensor& x, const Window2d& window, double pad_value, const Tensor& cols) {
  dispatch_floating(x.dtype(), "im2col", [&]<typename T>() { im2col_typed<T>(x, window, pad_value, cols); });
}

void col2im(const Tensor& cols, const Window2d& window, const Tensor& out) {
  dispatch_floating(out.dtype(), "col2im", [&]<typename T>() { col2im_typed<T>(cols, window, out); });
}

}  // namespace mg::cpu
