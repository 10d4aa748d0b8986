// A 3x3, stride-1, padding-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin and
// Gray, "Fast Algorithms for Convolutional Neural Networks", 2015): each 2x2 block of the output
// (a tile) comes from the 4x4 block of input around it as
//   Y = A^T [ (G g G^T) . (B^T d B) ] A          (. elementwise, 16 products per tile)
// against 36 multiply-adds per tile done directly, so the GEMMs carry 16/36 of im2col's
// arithmetic. Summed over the input channels, the 16 elementwise products of each tile are 16
// GEMMs: M[xi] = V[xi] (tiles x C) @ U[xi] (C x O), with
//   U = G g G^T  [16, C, O]   (the weight, transformed once per call)
//   V = B^T d B  [16, P, C]   (every tile of a group of images, P = images x tiles)
// and the output is A^T M A per tile. The weight gradient is the adjoint of the same algorithm:
//   dU[xi] = V[xi]^T @ (A dY A^T)[xi]  (summed over the tiles),   dg = G^T dU G.
// The algorithm is exact in exact arithmetic; in floating point its sums are ordered differently
// from im2col's, so the two agree to rounding.
//
// With B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
// A^T = [1 1 1 0; 0 1 -1 -1]. The transforms run with channels innermost, on images transposed to
// [H, W, C], so that each is one contiguous vector loop over the channels per tile, whatever the
// image's size; U, V and M keep channels innermost for the same reason, and the GEMMs take them
// as they are. Images go through in groups whose V fits a budget, as im2col's columns do
// (kernels_conv.cpp).
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu_gemm_pack.h"
#include "cpu_kernels.h"
#include "parallel.h"
#include "simd.h"

namespace mg::cpu {
namespace {

constexpr int64_t kTileArea = 16;  // a 4x4 transformed tile: 16 GEMMs

struct TileGrid {
  int64_t h, w;    // image height and width
  int64_t th, tw;  // tiles down and across: ceil(h / 2), ceil(w / 2)
  int64_t tiles() const { return th * tw; }
};

TileGrid grid_of(int64_t h, int64_t w) { return {h, w, (h + 1) / 2, (w + 1) / 2}; }

// dst [cols, rows] = src [rows, cols]^T, in square blocks that stay in L1.
template <typename T>
void transpose_blocks(const T* src, int64_t rows, int64_t cols, T* dst) {
  constexpr int64_t kBlock = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock)
    for (int64_t c0 = 0; c0 < cols; c0 += kBlock)
      for (int64_t c = c0; c < std::min(cols, c0 + kBlock); ++c)
        for (int64_t r = r0; r < std::min(rows, r0 + kBlock); ++r) dst[c * rows + r] = src[r * cols + c];
}

#if defined(__x86_64__) || defined(__i386__)
// The float transpose 8x8 floats at a time in registers (the scalar loop moves about one element
// per cycle, which made the transposes a quarter of the convolution); the edges as above.
__attribute__((target("avx2"))) void transpose_f32_avx2(const float* src, int64_t rows, int64_t cols, float* dst) {
  const int64_t rows8 = rows / 8 * 8, cols8 = cols / 8 * 8;
  for (int64_t r0 = 0; r0 < rows8; r0 += 8)
    for (int64_t c0 = 0; c0 < cols8; c0 += 8) {
      __m256 r[8];
      for (int64_t q = 0; q < 8; ++q) r[q] = _mm256_loadu_ps(src + (r0 + q) * cols + c0);
      transpose8x8(r);
      for (int64_t q = 0; q < 8; ++q) _mm256_storeu_ps(dst + (c0 + q) * rows + r0, r[q]);
    }
  for (int64_t r = 0; r < rows8; ++r)
    for (int64_t c = cols8; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
  for (int64_t r = rows8; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}
#endif

template <typename T>
void transpose(const T* src, int64_t rows, int64_t cols, T* dst) {
#if defined(__x86_64__) || defined(__i386__)
  if constexpr (std::is_same_v<T, float>) {
    static const bool avx2 = __builtin_cpu_supports("avx2");
    if (avx2) return transpose_f32_avx2(src, rows, cols, dst);
  }
#endif
  transpose_blocks(src, rows, cols, dst);
}

// Each image of [count, planes, area] to [count, area, planes], or back with the sizes swapped.
template <typename T>
void transpose_images(const T* src, int64_t count, int64_t rows, int64_t cols, T* dst) {
  parallel_for(count, rows * cols, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) transpose(src + i * rows * cols, rows, cols, dst + i * rows * cols);
  });
}

// Pointers to the channels of the n x n pixels of tile `tile` of a group of [H, W, channels]
// images, starting `shift` pixels from the tile's top-left output pixel (-1: the 4x4 input block
// around a tile, 0: its 2x2 outputs); pixels off the image point at `outside`.
template <int64_t N, typename P>
void tile_pixels(P images, const TileGrid& g, int64_t channels, int64_t tile, int64_t shift, P outside,
                 P (&at)[N * N]) {
  const int64_t image = tile / g.tiles();
  const int64_t y0 = 2 * (tile % g.tiles() / g.tw) + shift, x0 = 2 * (tile % g.tw) + shift;
  const P base = images + image * g.h * g.w * channels;
  for (int64_t r = 0; r < N; ++r)
    for (int64_t s = 0; s < N; ++s) {
      const int64_t y = y0 + r, x = x0 + s;
      at[r * N + s] = y >= 0 && y < g.h && x >= 0 && x < g.w ? base + (y * g.w + x) * channels : outside;
    }
}

// V = B^T d B for one tile, channel by channel: v[xi * stride + channel].
template <typename T>
[[gnu::always_inline]] inline void input_tile(const T* const (&d)[16], int64_t c, T* v, int64_t stride) {
  MG_NO_OVERLAP
  for (int64_t k = 0; k < c; ++k) {
    T t[4][4];  // B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3
    for (int64_t s = 0; s < 4; ++s) {
      t[0][s] = d[s][k] - d[8 + s][k];
      t[1][s] = d[4 + s][k] + d[8 + s][k];
      t[2][s] = d[8 + s][k] - d[4 + s][k];
      t[3][s] = d[4 + s][k] - d[12 + s][k];
    }
    for (int64_t i = 0; i < 4; ++i) {  // (B^T d) B on each row [a b c d]: a - c, b + c, c - b, b - d
      v[(i * 4 + 0) * stride + k] = t[i][0] - t[i][2];
      v[(i * 4 + 1) * stride + k] = t[i][1] + t[i][2];
      v[(i * 4 + 2) * stride + k] = t[i][2] - t[i][1];
      v[(i * 4 + 3) * stride + k] = t[i][1] - t[i][3];
    }
  }
}

// Y = A^T M A for one tile, channel by channel, from m[xi * stride + channel], plus the bias
// (null: none): y[i * 2 + j] points at output pixel (2ty + i, 2tx + j).
template <typename T>
[[gnu::always_inline]] inline void output_tile(const T* m, int64_t stride, int64_t o, const T* bias, T* const (&y)[4]) {
  MG_NO_OVERLAP
  for (int64_t k = 0; k < o; ++k) {
    T s[2][4];  // A^T M: rows m0 + m1 + m2, m1 - m2 - m3
    for (int64_t j = 0; j < 4; ++j) {
      s[0][j] = m[j * stride + k] + m[(4 + j) * stride + k] + m[(8 + j) * stride + k];
      s[1][j] = m[(4 + j) * stride + k] - m[(8 + j) * stride + k] - m[(12 + j) * stride + k];
    }
    const T b = bias != nullptr ? bias[k] : T(0);
    for (int64_t i = 0; i < 2; ++i) {  // (A^T M) A on each row [a b c d]: a + b + c, b - c - d
      y[i * 2][k] = s[i][0] + s[i][1] + s[i][2] + b;
      y[i * 2 + 1][k] = s[i][1] - s[i][2] - s[i][3] + b;
    }
  }
}

// A dY A^T for one tile of output gradient, channel by channel: g[i * 2 + j] points at the
// gradient of output pixel (2ty + i, 2tx + j) (zeros outside the image), into gt[xi * stride + channel].
template <typename T>
[[gnu::always_inline]] inline void grad_tile(const T* const (&g)[4], int64_t o, T* gt, int64_t stride) {
  MG_NO_OVERLAP
  for (int64_t k = 0; k < o; ++k) {
    const T g00 = g[0][k], g01 = g[1][k], g10 = g[2][k], g11 = g[3][k];
    // A dY: rows g0, g0 + g1, g0 - g1, -g1; each row [a b] times A^T: a, a + b, a - b, -b.
    const T a[4] = {g00, g00 + g10, g00 - g10, -g10};
    const T b[4] = {g01, g01 + g11, g01 - g11, -g11};
    for (int64_t i = 0; i < 4; ++i) {
      gt[(i * 4 + 0) * stride + k] = a[i];
      gt[(i * 4 + 1) * stride + k] = a[i] + b[i];
      gt[(i * 4 + 2) * stride + k] = a[i] - b[i];
      gt[(i * 4 + 3) * stride + k] = -b[i];
    }
  }
}

// The kernels as called: float32 through the per-ISA clones (simd.h), float64 as compiled.
MG_VECTORIZE void input_tile_kernel(const float* const (&d)[16], int64_t c, float* v, int64_t stride) {
  input_tile(d, c, v, stride);
}
MG_VECTORIZE void output_tile_kernel(const float* m, int64_t stride, int64_t o, const float* bias,
                                     float* const (&y)[4]) {
  output_tile(m, stride, o, bias, y);
}
MG_VECTORIZE void grad_tile_kernel(const float* const (&g)[4], int64_t o, float* gt, int64_t stride) {
  grad_tile(g, o, gt, stride);
}
void input_tile_kernel(const double* const (&d)[16], int64_t c, double* v, int64_t stride) {
  input_tile(d, c, v, stride);
}
void output_tile_kernel(const double* m, int64_t stride, int64_t o, const double* bias, double* const (&y)[4]) {
  output_tile(m, stride, o, bias, y);
}
void grad_tile_kernel(const double* const (&g)[4], int64_t o, double* gt, int64_t stride) {
  grad_tile(g, o, gt, stride);
}

// V [16, P, C] for the count images of xt [count, H, W, C].
template <typename T>
void transform_input(const T* xt, int64_t count, int64_t c, const TileGrid& g, T* v) {
  const int64_t p = count * g.tiles();
  const std::vector<T> zeros(static_cast<std::size_t>(c), T(0));
  parallel_for(p, 32 * c, [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) {
      const T* d[16];
      tile_pixels<4>(xt, g, c, tile, -1, zeros.data(), d);
      input_tile_kernel(d, c, v + tile * c, p * c);
    }
  });
}

// U [16, C, O] = G g G^T for each 3x3 kernel of weight [O, C, 3, 3] (contiguous).
template <typename T>
void transform_weight(const T* weight, int64_t o, int64_t c, T* u) {
  const int64_t stride = o * c;
  for (int64_t oi = 0; oi < o; ++oi)
    for (int64_t ci = 0; ci < c; ++ci) {
      const T* k = weight + (oi * c + ci) * 9;
      T t[4][3];  // G g: rows g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2
      for (int64_t j = 0; j < 3; ++j) {
        t[0][j] = k[j];
        t[1][j] = T(0.5) * (k[j] + k[3 + j] + k[6 + j]);
        t[2][j] = T(0.5) * (k[j] - k[3 + j] + k[6 + j]);
        t[3][j] = k[6 + j];
      }
      T* at = u + ci * o + oi;
      for (int64_t i = 0; i < 4; ++i) {  // (G g) G^T on each row [a b c]: a, (a + b + c) / 2, (a - b + c) / 2, c
        at[(i * 4 + 0) * stride] = t[i][0];
        at[(i * 4 + 1) * stride] = T(0.5) * (t[i][0] + t[i][1] + t[i][2]);
        at[(i * 4 + 2) * stride] = T(0.5) * (t[i][0] - t[i][1] + t[i][2]);
        at[(i * 4 + 3) * stride] = t[i][2];
      }
    }
}

// dweight [O, C, 3, 3] = G^T dU G for each 4x4 of du [16, C, O].
template <typename T>
void transform_weight_grad(const T* du, int64_t o, int64_t c, T* dweight) {
  const int64_t stride = o * c;
  for (int64_t oi = 0; oi < o; ++oi)
    for (int64_t ci = 0; ci < c; ++ci) {
      T d[4][4];
      for (int64_t xi = 0; xi < kTileArea; ++xi) d[xi / 4][xi % 4] = du[xi * stride + ci * o + oi];
      T t[3][4];  // G^T dU: rows u0 + (u1 + u2) / 2, (u1 - u2) / 2, (u1 + u2) / 2 + u3
      for (int64_t j = 0; j < 4; ++j) {
        t[0][j] = d[0][j] + T(0.5) * (d[1][j] + d[2][j]);
        t[1][j] = T(0.5) * (d[1][j] - d[2][j]);
        t[2][j] = T(0.5) * (d[1][j] + d[2][j]) + d[3][j];
      }
      T* k = dweight + (oi * c + ci) * 9;
      for (int64_t i = 0; i < 3; ++i) {  // (G^T dU) G on each row [a b c d]
        k[i * 3 + 0] = t[i][0] + T(0.5) * (t[i][1] + t[i][2]);
        k[i * 3 + 1] = T(0.5) * (t[i][1] - t[i][2]);
        k[i * 3 + 2] = T(0.5) * (t[i][1] + t[i][2]) + t[i][3];
      }
    }
}

// A group's V (and its M or transformed gradient, as large) near L2's size: the transforms and
// the GEMMs' packing then find them there. On the 64-channel 14x14 layer the three kernels ran
// 6% faster than with im2col's 2 MiB.
constexpr int64_t kGroupBytes = 512 << 10;

// The weight gradient's groups go in at most this many blocks of partial sums (kept at once).
constexpr int64_t kWeightGradBlocks = 8;

// Images per group: as many as have V [16, tiles, C] within column_bytes (and kGroupBytes), at
// least one.
int64_t group_images(int64_t n, int64_t c, const TileGrid& g, int64_t element, int64_t column_bytes) {
  const int64_t per_image = std::max<int64_t>(1, kTileArea * c * g.tiles() * element);
  return std::clamp<int64_t>(std::min(column_bytes, kGroupBytes) / per_image, 1, std::max<int64_t>(n, 1));
}

// t itself when contiguous, else a contiguous copy.
Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  copy(t, out);
  return out;
}

template <typename T>
Tensor scratch(const Shape& shape) {
  return Tensor::empty(shape, std::is_same_v<T, float> ? kFloat32 : kFloat64, kCPU);
}

// xt [count, H, W, C] and V [16, P, C] for images [begin, begin + count) of x [N, C, H, W].
template <typename T>
Tensor transformed_input(const T* x, int64_t begin, int64_t count, int64_t c, const TileGrid& g) {
  const Tensor xt = scratch<T>({count, g.h, g.w, c});
  transpose_images(x + begin * c * g.h * g.w, count, c, g.h * g.w, xt.data_ptr<T>());
  const Tensor v = scratch<T>({kTileArea, count * g.tiles(), c});
  transform_input(xt.data_ptr<T>(), count, c, g, v.data_ptr<T>());
  return v;
}

template <typename T>
void conv_typed(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in, int64_t column_bytes,
                const Tensor& out) {
  const Tensor x = dense(x_in), weight = dense(weight_in);
  const Tensor bias = bias_in.defined() ? dense(bias_in) : Tensor();
  const int64_t n = x.shape()[0], c = x.shape()[1], o = weight.shape()[0];
  const TileGrid g = grid_of(x.shape()[2], x.shape()[3]);
  const Tensor u = scratch<T>({kTileArea, c, o});
  transform_weight(weight.data_ptr<T>(), o, c, u.data_ptr<T>());
  const T* b = bias.defined() ? bias.data_ptr<T>() : nullptr;
  const int64_t group = group_images(n, c, g, sizeof(T), column_bytes);
  const int64_t groups = (n + group - 1) / group;
  // Groups in parallel, each on one thread (its GEMM and transforms then stay on it): a group's
  // GEMMs are too small to split well, and its transforms too short to be worth a fork. A batch
  // of one group runs alone, its GEMM and transforms parallel inside.
  parallel_for(groups, group * kTileArea * (c + o) * g.tiles(), [&](int64_t first_group, int64_t last_group) {
    for (int64_t gi = first_group; gi < last_group; ++gi) {
      const int64_t begin = gi * group;
      const int64_t count = std::min(group, n - begin), p = count * g.tiles();
      const Tensor v = transformed_input(x.data_ptr<T>(), begin, count, c, g);
      const Tensor m = scratch<T>({kTileArea, p, o});
      matmul(v, u, m);
      // Y per tile into yt [count, H, W, O]; the pixels of edge tiles past the image go to a sink.
      const Tensor yt = scratch<T>({count, g.h, g.w, o});
      const T* mp = m.data_ptr<T>();
      T* ytp = yt.data_ptr<T>();
      parallel_for(p, 32 * o, [&](int64_t first, int64_t last) {
        std::vector<T> sink(static_cast<std::size_t>(o));
        for (int64_t tile = first; tile < last; ++tile) {
          T* y[4];
          tile_pixels<2>(ytp, g, o, tile, 0, sink.data(), y);
          output_tile_kernel(mp + tile * o, p * o, o, b, y);
        }
      });
      transpose_images(ytp, count, g.h * g.w, o, out.data_ptr<T>() + begin * o * g.h * g.w);
    }
  });
}

template <typename T>
Tensor weight_grad_typed(const Tensor& grad_in, const Tensor& x_in, int64_t column_bytes) {
  const Tensor x = dense(x_in), grad = dense(grad_in);
  const int64_t n = x.shape()[0], c = x.shape()[1], o = grad.shape()[1];
  const TileGrid g = grid_of(x.shape()[2], x.shape()[3]);
  const std::vector<T> zeros(static_cast<std::size_t>(o), T(0));
  const int64_t group = group_images(n, c, g, sizeof(T), column_bytes);
  const int64_t groups = (n + group - 1) / group;
  // The groups in a fixed number of blocks, each summing its groups' dU in order on one thread;
  // the blocks' sums are then added in order. The blocks depend on the batch only, so the result
  // does not depend on the number of threads.
  const int64_t blocks = std::min(groups, kWeightGradBlocks);
  const Tensor partial = scratch<T>({blocks, kTileArea, c, o});
  auto block_sum = [&](int64_t block) {
    return Tensor::make_view(partial, {kTileArea, c, o}, {c * o, o, 1}, partial.offset() + block * kTileArea * c * o);
  };
  parallel_for(blocks, (groups / blocks) * group * kTileArea * (c + o) * g.tiles(), [&](int64_t b0, int64_t b1) {
    const Tensor part = scratch<T>({kTileArea, c, o});  // a later group's dU, before it is added
    for (int64_t block = b0; block < b1; ++block) {
      const Tensor du = block_sum(block);
      for (int64_t gi = groups * block / blocks; gi < groups * (block + 1) / blocks; ++gi) {
        const int64_t begin = gi * group;
        const int64_t count = std::min(group, n - begin), p = count * g.tiles();
        const Tensor v = transformed_input(x.data_ptr<T>(), begin, count, c, g);
        const Tensor gtt = scratch<T>({count, g.h, g.w, o});
        transpose_images(grad.data_ptr<T>() + begin * o * g.h * g.w, count, o, g.h * g.w, gtt.data_ptr<T>());
        const Tensor gt = scratch<T>({kTileArea, p, o});
        const T* gtp = gtt.data_ptr<T>();
        T* out = gt.data_ptr<T>();
        parallel_for(p, 32 * o, [&](int64_t first, int64_t last) {
          for (int64_t tile = first; tile < last; ++tile) {
            const T* d[4];
            tile_pixels<2>(gtp, g, o, tile, 0, zeros.data(), d);
            grad_tile_kernel(d, o, out + tile * o, p * o);
          }
        });
        // dU[xi] (C x O) = V[xi]^T (C x P) @ Gt[xi] (P x O), summed over the block's groups.
        const Tensor v_t = Tensor::make_view(v, {kTileArea, c, p}, {p * c, 1, c}, v.offset());
        if (gi == groups * block / blocks) {
          matmul(v_t, gt, du);
        } else {
          matmul(v_t, gt, part);
          binary(BinaryOp::Add, du, part, du);
        }
      }
    }
  });
  const Tensor du = block_sum(0);
  for (int64_t block = 1; block < blocks; ++block) binary(BinaryOp::Add, du, block_sum(block), du);
  Tensor dweight = scratch<T>({o, c, 3, 3});
  transform_weight_grad(du.data_ptr<T>(), o, c, dweight.data_ptr<T>());
  return dweight;
}

}  // namespace

bool winograd_conv3x3_applies(const Tensor& x, int64_t out_channels) {
  // The transforms cost about as much as a GEMM with a reduction over a few channels, and a small
  // image wastes part of its edge tiles: below these, im2col + GEMM is as fast.
  return (x.dtype() == kFloat32 || x.dtype() == kFloat64) && x.dim() == 4 && x.shape()[0] > 0 &&
         x.shape()[1] >= kWinogradMinChannels && out_channels >= kWinogradMinChannels &&
         x.shape()[2] * x.shape()[3] >= kWinogradMinArea;
}

void winograd_conv3x3(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t column_bytes,
                      const Tensor& out) {
  dispatch_floating(x.dtype(), "conv2d", [&]<typename T>() { conv_typed<T>(x, weight, bias, column_bytes, out); });
}

Tensor winograd_conv3x3_weight_grad(const Tensor& grad, const Tensor& x, int64_t column_bytes) {
  return dispatch_floating(x.dtype(), "conv2d backward",
                           [&]<typename T>() { return weight_grad_typed<T>(grad, x, column_bytes); });
}

}  // namespace mg::cpu
