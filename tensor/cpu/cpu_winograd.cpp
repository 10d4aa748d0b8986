// A 3x3, stride-1, padding-1 convolution by Winograd's minimal filtering F(m x m, 3x3) (Lavin and
// Gray, "Fast Algorithms for Convolutional Neural Networks", 2015): each m x m block of the
// output (a tile) comes from the (m + 2) x (m + 2) block of input around it as
//   Y = A^T [ (G g G^T) . (B^T d B) ] A          (. elementwise, (m + 2)^2 products per tile)
// against 9 m^2 multiply-adds per tile done directly. Summed over the input channels, the
// elementwise products of each tile are (m + 2)^2 GEMMs: M[xi] = V[xi] (tiles x C) @ U[xi] (C x O),
//   U = G g G^T  [(m+2)^2, C, O]   (the weight, transformed once per call)
//   V = B^T d B  [(m+2)^2, P, C]   (every tile of a group of images, P = images x tiles)
// and the output is A^T M A per tile. The weight gradient is the adjoint of the same algorithm:
//   dU[xi] = V[xi]^T @ (A dY A^T)[xi]  (summed over the tiles),   dg = G^T dU G.
// Two tile sizes:
//   F(2x2, 3x3): 16/36 of im2col's multiplications; transforms of 0s, 1s and 1/2s.
//   F(4x4, 3x3): 36/144, a quarter; transforms with coefficients up to 8 and down to 1/24, so
//     float32 rounds a few times wider (about 2e-6 of the largest value, against 5e-7), and
//     each transform costs about twice as much per pixel.
// The larger tile wins where the image is close to a multiple of 4 pixels (7x7: 44% fewer
// products; 14x14, three and a half tiles across: 27% fewer, which the transforms eat).
// Both are exact in exact arithmetic; in floating point their sums are ordered differently from
// im2col's, so they agree with it to rounding.
//
// The matrices:
//   F(2x2): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//           A^T = [1 1 1 0; 0 1 -1 -1]
//   F(4x4) (interpolation points 0, 1, -1, 2, -2 and infinity):
//           B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//           G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
//           A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
// Each 2-D transform is the 1-D one down the columns, then along the rows. The transforms run
// with channels innermost, on images transposed to [H, W, C], so that each is one contiguous
// vector loop over the channels per tile, whatever the image's size; U, V and M keep channels
// innermost for the same reason, and the GEMMs take them as they are. Images go through in groups
// whose V fits a budget, as im2col's columns do (kernels_conv.cpp).
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu_gemm_pack.h"
#include "cpu_kernels.h"
#include "matrix_transpose.h"
#include "parallel.h"
#include "simd.h"

namespace mg::cpu {
namespace {

struct TileGrid {
  int64_t h, w;    // image height and width
  int64_t th, tw;  // tiles down and across: ceil(h / m), ceil(w / m)
  int64_t tiles() const { return th * tw; }
};

template <typename F>
TileGrid grid_of(int64_t h, int64_t w) {
  return {h, w, (h + F::kOut - 1) / F::kOut, (w + F::kOut - 1) / F::kOut};
}

// dst [cols, rows] = src [rows, cols]^T.
template <typename T>
void transpose(const T* src, int64_t rows, int64_t cols, T* dst) {
  transpose_matrix(src, cols, rows, cols, dst, rows);
}

// Each image of [count, planes, area] to [count, area, planes], or back with the sizes swapped.
template <typename T>
void transpose_images(const T* src, int64_t count, int64_t rows, int64_t cols, T* dst) {
  parallel_for(count, rows * cols, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) transpose(src + i * rows * cols, rows, cols, dst + i * rows * cols);
  });
}

// Pointers to the channels of the n x n pixels of tile `tile` of a group of [H, W, channels]
// images with M x M tiles, starting `shift` pixels from the tile's top-left output pixel (-1: the
// input block around a tile, 0: its outputs); pixels off the image point at `outside`.
template <int64_t M, int64_t N, typename P>
void tile_pixels(P images, const TileGrid& g, int64_t channels, int64_t tile, int64_t shift, P outside,
                 P (&at)[N * N]) {
  const int64_t image = tile / g.tiles();
  const int64_t y0 = M * (tile % g.tiles() / g.tw) + shift, x0 = M * (tile % g.tw) + shift;
  const P base = images + image * g.h * g.w * channels;
  for (int64_t r = 0; r < N; ++r)
    for (int64_t s = 0; s < N; ++s) {
      const int64_t y = y0 + r, x = x0 + s;
      at[r * N + s] = y >= 0 && y < g.h && x >= 0 && x < g.w ? base + (y * g.w + x) * channels : outside;
    }
}

// The two tile sizes: kOut output pixels along a tile's side from kIn input pixels, a tile of
// kArea transformed values, and the 1-D transforms on one channel's values (the 2-D ones apply
// them down the columns, then along the rows):
//   input_1d r = B^T x, output_1d y = A^T m, grad_1d a = A g (output_1d's adjoint),
//   weight_1d u = G k, weight_grad_1d k = G^T d (weight_1d's adjoint).
struct F2x2 {
  static constexpr int64_t kOut = 2, kIn = 4, kArea = 16;
  // A group's V near L2's size: the transforms and the GEMMs' packing then find it there (on the
  // 64-channel 14x14 layer the three kernels ran 6% faster than with im2col's 2 MiB).
  static constexpr int64_t kGroupBytes = 512 << 10;
  template <typename T>
  [[gnu::always_inline]] static void input_1d(const T (&x)[4], T (&r)[4]) {
    r[0] = x[0] - x[2];
    r[1] = x[1] + x[2];
    r[2] = x[2] - x[1];
    r[3] = x[1] - x[3];
  }
  template <typename T>
  [[gnu::always_inline]] static void output_1d(const T (&m)[4], T (&y)[2]) {
    y[0] = m[0] + m[1] + m[2];
    y[1] = m[1] - m[2] - m[3];
  }
  template <typename T>
  [[gnu::always_inline]] static void grad_1d(const T (&g)[2], T (&a)[4]) {
    a[0] = g[0];
    a[1] = g[0] + g[1];
    a[2] = g[0] - g[1];
    a[3] = -g[1];
  }
  template <typename T>
  [[gnu::always_inline]] static void weight_1d(const T (&k)[3], T (&u)[4]) {
    u[0] = k[0];
    u[1] = T(0.5) * (k[0] + k[1] + k[2]);
    u[2] = T(0.5) * (k[0] - k[1] + k[2]);
    u[3] = k[2];
  }
  template <typename T>
  [[gnu::always_inline]] static void weight_grad_1d(const T (&d)[4], T (&k)[3]) {
    k[0] = d[0] + T(0.5) * (d[1] + d[2]);
    k[1] = T(0.5) * (d[1] - d[2]);
    k[2] = T(0.5) * (d[1] + d[2]) + d[3];
  }
};

struct F4x4 {
  static constexpr int64_t kOut = 4, kIn = 6, kArea = 36;
  // Its GEMMs have fewer tiles per image than F(2x2)'s: twice the budget keeps them about as
  // long (8-10% faster on the 64-channel 7x7 and 14x14 layers than 512 KiB).
  static constexpr int64_t kGroupBytes = 1 << 20;
  template <typename T>
  [[gnu::always_inline]] static void input_1d(const T (&x)[6], T (&r)[6]) {
    r[0] = T(4) * x[0] - T(5) * x[2] + x[4];
    r[1] = (x[3] + x[4]) - T(4) * (x[1] + x[2]);
    r[2] = (x[4] - x[3]) + T(4) * (x[1] - x[2]);
    r[3] = (x[4] - x[2]) + T(2) * (x[3] - x[1]);
    r[4] = (x[4] - x[2]) - T(2) * (x[3] - x[1]);
    r[5] = T(4) * x[1] - T(5) * x[3] + x[5];
  }
  template <typename T>
  [[gnu::always_inline]] static void output_1d(const T (&m)[6], T (&y)[4]) {
    const T sum12 = m[1] + m[2], diff12 = m[1] - m[2], sum34 = m[3] + m[4], diff34 = m[3] - m[4];
    y[0] = m[0] + sum12 + sum34;
    y[1] = diff12 + T(2) * diff34;
    y[2] = sum12 + T(4) * sum34;
    y[3] = diff12 + T(8) * diff34 + m[5];
  }
  template <typename T>
  [[gnu::always_inline]] static void grad_1d(const T (&g)[4], T (&a)[6]) {
    const T even = g[0] + g[2], odd = g[1] + g[3], even4 = g[0] + T(4) * g[2], odd4 = g[1] + T(4) * g[3];
    a[0] = g[0];
    a[1] = even + odd;
    a[2] = even - odd;
    a[3] = even4 + T(2) * odd4;
    a[4] = even4 - T(2) * odd4;
    a[5] = g[3];
  }
  // G's sixths and twenty-fourths as multiplications by 1/6 after exact scalings by powers of
  // two: a division per coefficient made the weight transforms as slow as a small GEMM.
  template <typename T>
  [[gnu::always_inline]] static void weight_1d(const T (&k)[3], T (&u)[6]) {
    constexpr T kSixth = T(1) / T(6);
    u[0] = T(0.25) * k[0];
    u[1] = -kSixth * (k[0] + k[1] + k[2]);
    u[2] = -kSixth * (k[0] - k[1] + k[2]);
    u[3] = kSixth * (T(0.25) * k[0] + T(0.5) * k[1] + k[2]);
    u[4] = kSixth * (T(0.25) * k[0] - T(0.5) * k[1] + k[2]);
    u[5] = k[2];
  }
  template <typename T>
  [[gnu::always_inline]] static void weight_grad_1d(const T (&d)[6], T (&k)[3]) {
    constexpr T kSixth = T(1) / T(6);
    k[0] = T(0.25) * d[0] + kSixth * (T(0.25) * (d[3] + d[4]) - (d[1] + d[2]));
    k[1] = kSixth * ((d[2] - d[1]) + T(0.5) * (d[3] - d[4]));
    k[2] = kSixth * ((d[3] + d[4]) - (d[1] + d[2])) + d[5];
  }
};

// One 2-D transform of one channel: the 1-D transform f (NIn values to NOut) down each column of
// the NIn x NIn block in(i, j), then along each row of the result, into store(i, j, value) for
// the NOut x NOut output. The small loops are unrolled outright, so that a caller's loop over the
// channels vectorises.
template <int64_t NIn, int64_t NOut, typename Load, typename F1d, typename Store>
[[gnu::always_inline]] inline void transform_2d(Load in, F1d f, Store store) {
  using T = std::remove_cvref_t<decltype(in(0, 0))>;
  T t[NOut][NIn];  // f down the columns
#pragma GCC unroll 6
  for (int64_t s = 0; s < NIn; ++s) {
    T column[NIn], r[NOut];
#pragma GCC unroll 6
    for (int64_t i = 0; i < NIn; ++i) column[i] = in(i, s);
    f(column, r);
#pragma GCC unroll 6
    for (int64_t i = 0; i < NOut; ++i) t[i][s] = r[i];
  }
#pragma GCC unroll 6
  for (int64_t i = 0; i < NOut; ++i) {
    T r[NOut];
    f(t[i], r);
#pragma GCC unroll 6
    for (int64_t j = 0; j < NOut; ++j) store(i, j, r[j]);
  }
}

// V = B^T d B for one tile, channel by channel: v[xi * stride + channel] from the kIn x kIn
// pixels d.
template <typename F, typename T>
[[gnu::always_inline]] inline void input_tile(const T* const (&d)[F::kArea], int64_t c, T* v, int64_t stride) {
  constexpr int64_t n = F::kIn;
  MG_NO_OVERLAP
  for (int64_t k = 0; k < c; ++k)
    transform_2d<n, n>(
        [&](int64_t i, int64_t j) __attribute__((always_inline)) { return d[i * n + j][k]; },
        [](const T(&x)[n], T(&r)[n]) __attribute__((always_inline)) { F::input_1d(x, r); },
        [&](int64_t i, int64_t j, T value) __attribute__((always_inline)) { v[(i * n + j) * stride + k] = value; });
}

// Y = A^T M A for one tile, channel by channel, from m[xi * stride + channel], plus the bias
// (null: none): y[i * kOut + j] points at output pixel (kOut ty + i, kOut tx + j).
template <typename F, typename T>
[[gnu::always_inline]] inline void output_tile(const T* m, int64_t stride, int64_t o, const T* bias,
                                               T* const (&y)[F::kOut * F::kOut]) {
  constexpr int64_t n = F::kIn, q = F::kOut;
  MG_NO_OVERLAP
  for (int64_t k = 0; k < o; ++k) {
    const T b = bias != nullptr ? bias[k] : T(0);
    transform_2d<n, q>(
        [&](int64_t i, int64_t j) __attribute__((always_inline)) { return m[(i * n + j) * stride + k]; },
        [](const T(&x)[n], T(&r)[q]) __attribute__((always_inline)) { F::output_1d(x, r); },
        [&](int64_t i, int64_t j, T value) __attribute__((always_inline)) { y[i * q + j][k] = value + b; });
  }
}

// A dY A^T for one tile of output gradient, channel by channel: g[i * kOut + j] points at the
// gradient of output pixel (kOut ty + i, kOut tx + j) (zeros outside the image), into
// gt[xi * stride + channel].
template <typename F, typename T>
[[gnu::always_inline]] inline void grad_tile(const T* const (&g)[F::kOut * F::kOut], int64_t o, T* gt, int64_t stride) {
  constexpr int64_t n = F::kIn, q = F::kOut;
  MG_NO_OVERLAP
  for (int64_t k = 0; k < o; ++k)
    transform_2d<q, n>(
        [&](int64_t i, int64_t j) __attribute__((always_inline)) { return g[i * q + j][k]; },
        [](const T(&x)[q], T(&r)[n]) __attribute__((always_inline)) { F::grad_1d(x, r); },
        [&](int64_t i, int64_t j, T value) __attribute__((always_inline)) { gt[(i * n + j) * stride + k] = value; });
}

// The 2-D transform f of one NIn x NIn block per channel, for count channels: in[i * NIn + j]
// points at the block's (i, j) values over the channels, out[i * NOut + j] at the result's.
template <int64_t NIn, int64_t NOut, typename T, typename F1d>
[[gnu::always_inline]] inline void transform_channels(const T* const (&in)[NIn * NIn], int64_t count,
                                                      T* const (&out)[NOut * NOut], F1d f) {
  MG_NO_OVERLAP
  for (int64_t q = 0; q < count; ++q)
    transform_2d<NIn, NOut>(
        [&](int64_t i, int64_t j) __attribute__((always_inline)) { return in[i * NIn + j][q]; },
        f, [&](int64_t i, int64_t j, T value) __attribute__((always_inline)) { out[i * NOut + j][q] = value; });
}

// U = G g G^T for one input channel, over the o output channels: k[i * 3 + j] points at the
// kernels' (i, j) values, u[xi] at U's (xi, channel) row.
template <typename F, typename T>
[[gnu::always_inline]] inline void weight_tile(const T* const (&k)[9], int64_t o, T* const (&u)[F::kArea]) {
  constexpr int64_t n = F::kIn;
  transform_channels<3, n>(
      k, o, u, [](const T(&x)[3], T(&r)[n]) __attribute__((always_inline)) { F::weight_1d(x, r); });
}

// G^T dU G for one input channel, over the o output channels: d[xi] points at dU's (xi, channel)
// row, k[i * 3 + j] at the kernels' (i, j) values.
template <typename F, typename T>
[[gnu::always_inline]] inline void weight_grad_tile(const T* const (&d)[F::kArea], int64_t o, T* const (&k)[9]) {
  constexpr int64_t n = F::kIn;
  transform_channels<n, 3>(
      d, o, k, [](const T(&x)[n], T(&r)[3]) __attribute__((always_inline)) { F::weight_grad_1d(x, r); });
}

// The kernels as called: float32 through the per-ISA clones (simd.h), float64 as compiled; the
// tile size is in the pointer arrays' lengths.
MG_VECTORIZE void input_tile_kernel(const float* const (&d)[16], int64_t c, float* v, int64_t stride) {
  input_tile<F2x2>(d, c, v, stride);
}
MG_VECTORIZE void input_tile_kernel(const float* const (&d)[36], int64_t c, float* v, int64_t stride) {
  input_tile<F4x4>(d, c, v, stride);
}
MG_VECTORIZE void output_tile_kernel(const float* m, int64_t stride, int64_t o, const float* bias,
                                     float* const (&y)[4]) {
  output_tile<F2x2>(m, stride, o, bias, y);
}
MG_VECTORIZE void output_tile_kernel(const float* m, int64_t stride, int64_t o, const float* bias,
                                     float* const (&y)[16]) {
  output_tile<F4x4>(m, stride, o, bias, y);
}
MG_VECTORIZE void grad_tile_kernel(const float* const (&g)[4], int64_t o, float* gt, int64_t stride) {
  grad_tile<F2x2>(g, o, gt, stride);
}
MG_VECTORIZE void grad_tile_kernel(const float* const (&g)[16], int64_t o, float* gt, int64_t stride) {
  grad_tile<F4x4>(g, o, gt, stride);
}
MG_VECTORIZE void weight_tile_kernel(const float* const (&k)[9], int64_t o, float* const (&u)[16]) {
  weight_tile<F2x2>(k, o, u);
}
MG_VECTORIZE void weight_tile_kernel(const float* const (&k)[9], int64_t o, float* const (&u)[36]) {
  weight_tile<F4x4>(k, o, u);
}
MG_VECTORIZE void weight_grad_tile_kernel(const float* const (&d)[16], int64_t o, float* const (&k)[9]) {
  weight_grad_tile<F2x2>(d, o, k);
}
MG_VECTORIZE void weight_grad_tile_kernel(const float* const (&d)[36], int64_t o, float* const (&k)[9]) {
  weight_grad_tile<F4x4>(d, o, k);
}
template <size_t N>
void input_tile_kernel(const double* const (&d)[N], int64_t c, double* v, int64_t stride) {
  input_tile<std::conditional_t<N == 16, F2x2, F4x4>>(d, c, v, stride);
}
template <size_t N>
void output_tile_kernel(const double* m, int64_t stride, int64_t o, const double* bias, double* const (&y)[N]) {
  output_tile<std::conditional_t<N == 4, F2x2, F4x4>>(m, stride, o, bias, y);
}
template <size_t N>
void grad_tile_kernel(const double* const (&g)[N], int64_t o, double* gt, int64_t stride) {
  grad_tile<std::conditional_t<N == 4, F2x2, F4x4>>(g, o, gt, stride);
}
template <size_t N>
void weight_tile_kernel(const double* const (&k)[9], int64_t o, double* const (&u)[N]) {
  weight_tile<std::conditional_t<N == 16, F2x2, F4x4>>(k, o, u);
}
template <size_t N>
void weight_grad_tile_kernel(const double* const (&d)[N], int64_t o, double* const (&k)[9]) {
  weight_grad_tile<std::conditional_t<N == 16, F2x2, F4x4>>(d, o, k);
}

// V [kArea, P, C] for the count images of xt [count, H, W, C].
template <typename F, typename T>
void transform_input(const T* xt, int64_t count, int64_t c, const TileGrid& g, T* v) {
  const int64_t p = count * g.tiles();
  const std::vector<T> zeros(static_cast<std::size_t>(c), T(0));
  parallel_for(p, 32 * c, [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) {
      const T* d[F::kArea];
      tile_pixels<F::kOut, F::kIn>(xt, g, c, tile, -1, zeros.data(), d);
      input_tile_kernel(d, c, v + tile * c, p * c);
    }
  });
}

// A tensor from the caching allocator, for the intermediates below.
template <typename T>
Tensor scratch(const Shape& shape) {
  return Tensor::empty(shape, std::is_same_v<T, float> ? kFloat32 : kFloat64, kCPU);
}

// U [kArea, C, O] = G g G^T for each 3x3 kernel of weight [O, C, 3, 3] (contiguous), through
// the weight transposed to [C, 3, 3, O]: output channels innermost on both sides, one vector
// loop per input channel. Kernel by kernel (scalar, U written a plane apart per value) it took
// 0.2 ms for a 64x64 F(4x4) weight, longer than the convolution of 5 3x3 images.
template <typename F, typename T>
void transform_weight(const T* weight, int64_t o, int64_t c, T* u) {
  const Tensor kernels = scratch<T>({c, 9, o});
  const T* kp = kernels.data_ptr<T>();
  transpose(weight, o, c * 9, kernels.data_ptr<T>());
  for (int64_t ci = 0; ci < c; ++ci) {
    const T* k[9];
    for (int64_t ij = 0; ij < 9; ++ij) k[ij] = kp + (ci * 9 + ij) * o;
    T* at[F::kArea];
    for (int64_t xi = 0; xi < F::kArea; ++xi) at[xi] = u + (xi * c + ci) * o;
    weight_tile_kernel(k, o, at);
  }
}

// dweight [O, C, 3, 3] = G^T dU G for each kIn x kIn of du [kArea, C, O]: the adjoint of
// transform_weight, into [C, 3, 3, O] and transposed back.
template <typename F, typename T>
void transform_weight_grad(const T* du, int64_t o, int64_t c, T* dweight) {
  const Tensor kernels = scratch<T>({c, 9, o});
  T* kp = kernels.data_ptr<T>();
  for (int64_t ci = 0; ci < c; ++ci) {
    const T* d[F::kArea];
    for (int64_t xi = 0; xi < F::kArea; ++xi) d[xi] = du + (xi * c + ci) * o;
    T* k[9];
    for (int64_t ij = 0; ij < 9; ++ij) k[ij] = kp + (ci * 9 + ij) * o;
    weight_grad_tile_kernel(d, o, k);
  }
  transpose(kp, c * 9, o, dweight);
}

// The weight gradient's groups go in at most this many blocks of partial sums (kept at once).
constexpr int64_t kWeightGradBlocks = 8;

// Images per group: as many as have V [kArea, tiles, C] within column_bytes (and the tile size's
// group budget), at least one.
template <typename F>
int64_t group_images(int64_t n, int64_t c, const TileGrid& g, int64_t element, int64_t column_bytes) {
  const int64_t per_image = std::max<int64_t>(1, F::kArea * c * g.tiles() * element);
  return std::clamp<int64_t>(std::min(column_bytes, F::kGroupBytes) / per_image, 1, std::max<int64_t>(n, 1));
}

// t itself when contiguous, else a contiguous copy.
Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  copy(t, out);
  return out;
}

// xt [count, H, W, C] and V [kArea, P, C] for images [begin, begin + count) of x [N, C, H, W].
template <typename F, typename T>
Tensor transformed_input(const T* x, int64_t begin, int64_t count, int64_t c, const TileGrid& g) {
  const Tensor xt = scratch<T>({count, g.h, g.w, c});
  transpose_images(x + begin * c * g.h * g.w, count, c, g.h * g.w, xt.data_ptr<T>());
  const Tensor v = scratch<T>({F::kArea, count * g.tiles(), c});
  transform_input<F>(xt.data_ptr<T>(), count, c, g, v.data_ptr<T>());
  return v;
}

template <typename F, typename T>
void conv_typed(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in, int64_t column_bytes,
                const Tensor& out) {
  const Tensor x = dense(x_in), weight = dense(weight_in);
  const Tensor bias = bias_in.defined() ? dense(bias_in) : Tensor();
  const int64_t n = x.shape()[0], c = x.shape()[1], o = weight.shape()[0];
  const TileGrid g = grid_of<F>(x.shape()[2], x.shape()[3]);
  const Tensor u = scratch<T>({F::kArea, c, o});
  transform_weight<F>(weight.data_ptr<T>(), o, c, u.data_ptr<T>());
  const T* b = bias.defined() ? bias.data_ptr<T>() : nullptr;
  const int64_t group = group_images<F>(n, c, g, sizeof(T), column_bytes);
  const int64_t groups = (n + group - 1) / group;
  // Groups in parallel, each on one thread (its GEMM and transforms then stay on it): a group's
  // GEMMs are too small to split well, and its transforms too short to be worth a fork. A batch
  // of one group runs alone, its GEMM and transforms parallel inside.
  parallel_for(groups, group * F::kArea * (c + o) * g.tiles(), [&](int64_t first_group, int64_t last_group) {
    for (int64_t gi = first_group; gi < last_group; ++gi) {
      const int64_t begin = gi * group;
      const int64_t count = std::min(group, n - begin), p = count * g.tiles();
      const Tensor v = transformed_input<F>(x.data_ptr<T>(), begin, count, c, g);
      const Tensor m = scratch<T>({F::kArea, p, o});
      matmul(v, u, m);
      // Y per tile into yt [count, H, W, O]; the pixels of edge tiles past the image go to a sink.
      const Tensor yt = scratch<T>({count, g.h, g.w, o});
      const T* mp = m.data_ptr<T>();
      T* ytp = yt.data_ptr<T>();
      parallel_for(p, 32 * o, [&](int64_t first, int64_t last) {
        std::vector<T> sink(static_cast<std::size_t>(o));
        for (int64_t tile = first; tile < last; ++tile) {
          T* y[F::kOut * F::kOut];
          tile_pixels<F::kOut, F::kOut>(ytp, g, o, tile, 0, sink.data(), y);
          output_tile_kernel(mp + tile * o, p * o, o, b, y);
        }
      });
      transpose_images(ytp, count, g.h * g.w, o, out.data_ptr<T>() + begin * o * g.h * g.w);
    }
  });
}

template <typename F, typename T>
Tensor weight_grad_typed(const Tensor& grad_in, const Tensor& x_in, int64_t column_bytes) {
  const Tensor x = dense(x_in), grad = dense(grad_in);
  const int64_t n = x.shape()[0], c = x.shape()[1], o = grad.shape()[1];
  const TileGrid g = grid_of<F>(x.shape()[2], x.shape()[3]);
  const std::vector<T> zeros(static_cast<std::size_t>(o), T(0));
  const int64_t group = group_images<F>(n, c, g, sizeof(T), column_bytes);
  const int64_t groups = (n + group - 1) / group;
  // The groups in a fixed number of blocks, each summing its groups' dU in order on one thread;
  // the blocks' sums are then added in order. The blocks depend on the batch only, so the result
  // does not depend on the number of threads.
  const int64_t blocks = std::min(groups, kWeightGradBlocks);
  const Tensor partial = scratch<T>({blocks, F::kArea, c, o});
  auto block_sum = [&](int64_t block) {
    return Tensor::make_view(partial, {F::kArea, c, o}, {c * o, o, 1}, partial.offset() + block * F::kArea * c * o);
  };
  parallel_for(blocks, (groups / blocks) * group * F::kArea * (c + o) * g.tiles(), [&](int64_t b0, int64_t b1) {
    const Tensor part = scratch<T>({F::kArea, c, o});  // a later group's dU, before it is added
    for (int64_t block = b0; block < b1; ++block) {
      const Tensor du = block_sum(block);
      for (int64_t gi = groups * block / blocks; gi < groups * (block + 1) / blocks; ++gi) {
        const int64_t begin = gi * group;
        const int64_t count = std::min(group, n - begin), p = count * g.tiles();
        const Tensor v = transformed_input<F>(x.data_ptr<T>(), begin, count, c, g);
        const Tensor gtt = scratch<T>({count, g.h, g.w, o});
        transpose_images(grad.data_ptr<T>() + begin * o * g.h * g.w, count, o, g.h * g.w, gtt.data_ptr<T>());
        const Tensor gt = scratch<T>({F::kArea, p, o});
        const T* gtp = gtt.data_ptr<T>();
        T* out = gt.data_ptr<T>();
        parallel_for(p, 32 * o, [&](int64_t first, int64_t last) {
          for (int64_t tile = first; tile < last; ++tile) {
            const T* d[F::kOut * F::kOut];
            tile_pixels<F::kOut, F::kOut>(gtp, g, o, tile, 0, zeros.data(), d);
            grad_tile_kernel(d, o, out + tile * o, p * o);
          }
        });
        // dU[xi] (C x O) = V[xi]^T (C x P) @ Gt[xi] (P x O), summed over the block's groups.
        const Tensor v_t = Tensor::make_view(v, {F::kArea, c, p}, {p * c, 1, c}, v.offset());
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
  transform_weight_grad<F>(du.data_ptr<T>(), o, c, dweight.data_ptr<T>());
  return dweight;
}

// Elementwise products per channel pair of an image covered by m x m output tiles (9 per pixel
// for the direct convolution).
int64_t tile_products(int64_t height, int64_t width, int64_t m) {
  return (m + 2) * (m + 2) * ((height + m - 1) / m) * ((width + m - 1) / m);
}

}  // namespace

bool winograd_conv3x3_applies(const Tensor& x, int64_t out_channels) {
  // The transforms cost about as much as a GEMM with a reduction over a few channels, and edge
  // tiles hang past a small image: with fewer channels, or where the tiles save less than a
  // quarter of the products, im2col + GEMM is as fast. Small images that pass (3x3 to 5x5) gain
  // most: im2col's GEMM there is one per image with as few columns as pixels, at a third of peak.
  if (!(x.dtype() == kFloat32 || x.dtype() == kFloat64) || x.dim() != 4 || x.shape()[0] == 0 ||
      x.shape()[1] < kWinogradMinChannels || out_channels < kWinogradMinChannels)
    return false;
  const int64_t h = x.shape()[2], w = x.shape()[3];
  return 4 * tile_products(h, w, winograd_tile_size(h, w)) <= 3 * 9 * h * w;
}

int64_t winograd_tile_size(int64_t height, int64_t width) {
  // F(4x4) where it needs at most 60% of F(2x2)'s elementwise products (the tiles' share of the
  // GEMMs), which covers its costlier transforms: images a multiple of 4 pixels across, or one short.
  return 5 * tile_products(height, width, 4) <= 3 * tile_products(height, width, 2) ? 4 : 2;
}

void winograd_conv3x3(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t column_bytes,
                      const Tensor& out) {
  const bool four = winograd_tile_size(x.shape()[2], x.shape()[3]) == 4;
  dispatch_floating(x.dtype(), "conv2d", [&]<typename T>() {
    four ? conv_typed<F4x4, T>(x, weight, bias, column_bytes, out)
         : conv_typed<F2x2, T>(x, weight, bias, column_bytes, out);
  });
}

Tensor winograd_conv3x3_weight_grad(const Tensor& grad, const Tensor& x, int64_t column_bytes) {
  const bool four = winograd_tile_size(x.shape()[2], x.shape()[3]) == 4;
  return dispatch_floating(x.dtype(), "conv2d backward", [&]<typename T>() {
    return four ? weight_grad_typed<F4x4, T>(grad, x, column_bytes) : weight_grad_typed<F2x2, T>(grad, x, column_bytes);
  });
}

}  // namespace mg::cpu
