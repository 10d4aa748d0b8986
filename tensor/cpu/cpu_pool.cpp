// Max pooling straight from the image planes, and its adjoint (max_unpool2d), planes in parallel.
// The general loop walks each window's positions inside the plane; the 2x2 stride-2 window of
// the conv4 model has a vectorised loop of its own for float32, cloned per ISA. Both pick the
// same element: the first maximum in window order, a NaN over any number.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu_kernels.h"
#include "parallel.h"
#include "simd.h"

namespace mg::cpu {
namespace {

// Bitwise, not short-circuit: on real data the outcome is a coin flip, and the first kernel's
// mispredicted branches cost ~8 ns per output.
template <typename T>
[[gnu::always_inline]] inline bool beats(T v, T best) {
  return (v > best) | ((v != v) & (best == best));  // v != v: v is NaN
}

template <typename T>
void max_pool_plane(const T* plane, int64_t height, int64_t width, const Window2d& w, int64_t oh, int64_t ow, T* out,
                    int64_t* indices) {
  for (int64_t oy = 0; oy < oh; ++oy) {
    for (int64_t ox = 0; ox < ow; ++ox) {
      T best{};
      int64_t at = -1;
      for (int64_t i = 0; i < w.kh; ++i) {
        const int64_t y = oy * w.sh - w.ph + i * w.dh;
        if (y < 0 || y >= height) continue;
        for (int64_t j = 0; j < w.kw; ++j) {
          const int64_t x = ox * w.sw - w.pw + j * w.dw;
          if (x < 0 || x >= width) continue;
          const T v = plane[y * width + x];
          const bool take = (at < 0) | beats(v, best);
          best = take ? v : best;
          at = take ? y * width + x : at;
        }
      }
      out[oy * ow + ox] = best;
      indices[oy * ow + ox] = at;
    }
  }
}

// The 2x2 stride-2 window over planes of even width (W = 2 * ow): first the best of each
// horizontal pair along the flattened rows of all the planes (a row's first maximum wins ties),
// then, per plane, the best of each pair of vertically adjacent pairs along the flattened rows
// (the top one wins ties), of which the rows that start a window are copied out: the first
// maximum in row-major window order, as the general loop finds it. Every loop runs over a whole
// plane or more: one pass per output row (7 or 14 lanes in conv4) ran mostly in the scalar
// epilogue, at 2-4x the time. Plain loops that each ISA's clone vectorises (GCC lowers explicit
// 16-lane shuffles for the baseline before it clones, which left them scalar).
struct Pool2x2Scratch {
  std::vector<float> pair, best;  // planes * height * ow; height * ow
  std::vector<int32_t> pair_col;  // planes * height * ow
  std::vector<int64_t> at;        // height * ow
};

MG_VECTORIZE void max_pool_planes_2x2_f32(const float* in, int64_t planes, int64_t height, int64_t ow, float* out,
                                          int64_t* indices, float* pair, int32_t* pair_col, float* best, int64_t* at) {
  const int64_t pairs = planes * height * ow;
  for (int64_t k = 0; k < pairs; ++k) {
    const float left = in[2 * k], right = in[2 * k + 1];
    const bool right_wins = beats(right, left);
    pair[k] = right_wins ? right : left;
    pair_col[k] = right_wins;
  }
  const int64_t width = 2 * ow, oh = height / 2, per_plane = height * ow, below = per_plane - ow;
  for (int64_t p = 0; p < planes; ++p) {
    const float* top = pair + p * per_plane;
    const int32_t* col = pair_col + p * per_plane;
    // k = y * ow + ox: the window's top-left element is at 2k in the plane.
    for (int64_t k = 0; k < below; ++k) {
      const bool bottom_wins = beats(top[k + ow], top[k]);
      best[k] = bottom_wins ? top[k + ow] : top[k];
      at[k] = 2 * k + (bottom_wins ? width + col[k + ow] : col[k]);
    }
    for (int64_t oy = 0; oy < oh; ++oy) {
      std::copy_n(best + 2 * oy * ow, ow, out + (p * oh + oy) * ow);
      std::copy_n(at + 2 * oy * ow, ow, indices + (p * oh + oy) * ow);
    }
  }
}

bool is_plain_2x2(const Window2d& w) {
  return w.kh == 2 && w.kw == 2 && w.sh == 2 && w.sw == 2 && w.ph == 0 && w.pw == 0 && w.dh == 1 && w.dw == 1;
}

}  // namespace

void max_pool2d(const Tensor& x, const Window2d& window, const Tensor& out, const Tensor& indices) {
  const int64_t planes = x.shape()[0] * x.shape()[1], height = x.shape()[2], width = x.shape()[3];
  const int64_t oh = out.shape()[2], ow = out.shape()[3];
  // The 2x2 loop needs an even width, so that a horizontal pair never straddles two rows (an odd
  // last row is left out, as the window leaves it).
  const bool plain = is_plain_2x2(window) && width == 2 * ow;
  dispatch_floating(x.dtype(), "max_pool2d", [&]<typename T>() {
    const T* in = x.data_ptr<T>();
    T* o = out.data_ptr<T>();
    int64_t* at = indices.data_ptr<int64_t>();
    parallel_for(planes, height * width, [&](int64_t begin, int64_t end) {
      if constexpr (std::is_same_v<T, float>) {
        if (plain) {
          // Planes in groups whose scratch stays in L2.
          const int64_t group = std::max<int64_t>(1, (16 << 10) / std::max<int64_t>(1, height * ow));
          Pool2x2Scratch s;
          s.pair.resize(group * height * ow);
          s.pair_col.resize(group * height * ow);
          s.best.resize(height * ow);
          s.at.resize(height * ow);
          for (int64_t p = begin; p < end; p += group) {
            const int64_t count = std::min(group, end - p);
            max_pool_planes_2x2_f32(in + p * height * width, count, height, ow, o + p * oh * ow, at + p * oh * ow,
                                    s.pair.data(), s.pair_col.data(), s.best.data(), s.at.data());
          }
          return;
        }
      }
      for (int64_t p = begin; p < end; ++p) {
        const T* plane = in + p * height * width;
        max_pool_plane(plane, height, width, window, oh, ow, o + p * oh * ow, at + p * oh * ow);
      }
    });
  });
}

void max_unpool2d(const Tensor& grad, const Tensor& indices, const Tensor& out) {
  const int64_t planes = out.shape()[0] * out.shape()[1], area = out.shape()[2] * out.shape()[3];
  const int64_t positions = grad.shape()[2] * grad.shape()[3];
  dispatch_floating(out.dtype(), "max_unpool2d", [&]<typename T>() {
    const T* g = grad.data_ptr<T>();
    const int64_t* at = indices.data_ptr<int64_t>();
    T* o = out.data_ptr<T>();
    parallel_for(planes, area + positions, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        T* plane = o + p * area;
        std::fill(plane, plane + area, T(0));
        const T* src = g + p * positions;
        const int64_t* where = at + p * positions;
        for (int64_t i = 0; i < positions; ++i) plane[where[i]] += src[i];
      }
    });
  });
}

}  // namespace mg::cpu
