// Max pooling straight from the image planes, and its adjoint (max_unpool2d), planes in parallel.
// The general loop walks each window's positions inside the plane; the 2x2 stride-2 window of
// the conv4 model has a branch-free loop of its own, cloned per ISA, that the compiler
// vectorises. Both pick the same element: the first maximum in window order, a NaN over any
// number.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu_kernels.h"
#include "parallel.h"
#include "simd.h"

namespace mg::cpu {
namespace {

template <typename T>
[[gnu::always_inline]] inline bool beats(T v, T best) {
  return v > best || (v != v && best == best);  // v != v: v is NaN
}

template <typename T>
void max_pool_plane(const T* plane, int64_t height, int64_t width, const Window2d& w, int64_t oh, int64_t ow,
                    T* out, int64_t* indices) {
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
          if (at < 0 || beats(v, best)) best = v, at = y * width + x;
        }
      }
      out[oy * ow + ox] = best;
      indices[oy * ow + ox] = at;
    }
  }
}

template <typename T>
[[gnu::always_inline]] inline void max_pool_plane_2x2(const T* plane, int64_t width, int64_t oh, int64_t ow, T* out,
                                                      int64_t* indices) {
  for (int64_t oy = 0; oy < oh; ++oy) {
    const T* top = plane + 2 * oy * width;
    const T* bottom = top + width;
    T* o = out + oy * ow;
    int64_t* at = indices + oy * ow;
    for (int64_t ox = 0; ox < ow; ++ox) {
      const int64_t first = 2 * oy * width + 2 * ox;
      T best = top[2 * ox];
      int64_t pick = first;
      const T candidates[3] = {top[2 * ox + 1], bottom[2 * ox], bottom[2 * ox + 1]};
      const int64_t positions[3] = {first + 1, first + width, first + width + 1};
      for (int k = 0; k < 3; ++k) {
        const bool win = beats(candidates[k], best);
        best = win ? candidates[k] : best;
        pick = win ? positions[k] : pick;
      }
      o[ox] = best;
      at[ox] = pick;
    }
  }
}

MG_VECTORIZE void max_pool_plane_2x2_f32(const float* plane, int64_t width, int64_t oh, int64_t ow, float* out,
                                         int64_t* indices) {
  max_pool_plane_2x2(plane, width, oh, ow, out, indices);
}

bool is_plain_2x2(const Window2d& w) {
  return w.kh == 2 && w.kw == 2 && w.sh == 2 && w.sw == 2 && w.ph == 0 && w.pw == 0 && w.dh == 1 && w.dw == 1;
}

}  // namespace

void max_pool2d(const Tensor& x, const Window2d& window, const Tensor& out, const Tensor& indices) {
  const int64_t planes = x.shape()[0] * x.shape()[1], height = x.shape()[2], width = x.shape()[3];
  const int64_t oh = out.shape()[2], ow = out.shape()[3];
  const bool plain = is_plain_2x2(window);
  dispatch_floating(x.dtype(), "max_pool2d", [&]<typename T>() {
    const T* in = x.data_ptr<T>();
    T* o = out.data_ptr<T>();
    int64_t* at = indices.data_ptr<int64_t>();
    parallel_for(planes, height * width, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const T* plane = in + p * height * width;
        if constexpr (std::is_same_v<T, float>) {
          if (plain) {
            max_pool_plane_2x2_f32(plane, width, oh, ow, o + p * oh * ow, at + p * oh * ow);
            continue;
          }
        }
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
