// Batched GEMM: out[b] = a[b] @ b[b] with a [B,M,K], b [B,K,N] of any strides (a transposed
// operand is a stride swap, a broadcast batch has stride 0) and out [B,M,N] contiguous.
//
// The classic blocked scheme (Goto / BLIS), kept portable and readable:
//   for each (batch, block of kMC rows)                      <- parallel over these
//     for each block of kNC columns, for each block of kKC of the K dim
//       pack B[kc, nc] into strips of kNR columns  (k-major: strip[k][0..kNR))
//       pack A[mc, kc] into strips of kMR rows     (k-major: strip[k][0..kMR))
//       for every (row strip, column strip): micro-kernel, a kMR x kNR register tile
//       accumulated over the kc block and added into out.
// Packing turns any input strides into unit-stride streams and pads edges with zeros, so the
// micro-kernel has constant trip counts the compiler unrolls and vectorises. A later issue
// replaces the micro-kernel with AVX-512/AVX2 intrinsics chosen at run time; the blocking
// stays.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu_kernels.h"
#include "parallel.h"

namespace mg::cpu {
namespace {

// Register tile sizes, sized for the baseline x86-64 ISA (16 SSE registers: a 4x8 float tile
// is 8 accumulators + 2 for B + 1 broadcast of A). Wider ISAs get their own micro-kernels later.
template <typename T>
struct Tiles;
template <>
struct Tiles<float> {
  static constexpr int64_t kMR = 4, kNR = 8;
};
template <>
struct Tiles<double> {
  static constexpr int64_t kMR = 4, kNR = 4;
};

constexpr int64_t kMC = 64;   // rows of A per work item
constexpr int64_t kKC = 256;  // depth of one packed panel
constexpr int64_t kNC = 512;  // columns of B per packed panel

struct Operand {
  const char* base;
  int64_t sb, sr, sc;  // element strides of batch, row, column
};

// Packs rows [r0, r0 + rows) x depth [k0, k0 + kc) of A into kMR-row strips, k-major, zero-padded.
template <typename T>
void pack_a(const T* a, int64_t sr, int64_t sk, int64_t rows, int64_t kc, T* dst) {
  constexpr int64_t MR = Tiles<T>::kMR;
  for (int64_t i0 = 0; i0 < rows; i0 += MR) {
    const int64_t mr = std::min(MR, rows - i0);
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t i = 0; i < mr; ++i) dst[k * MR + i] = a[(i0 + i) * sr + k * sk];
      for (int64_t i = mr; i < MR; ++i) dst[k * MR + i] = T(0);
    }
    dst += MR * kc;
  }
}

// Packs depth [k0, k0 + kc) x columns [j0, j0 + cols) of B into kNR-column strips, k-major.
template <typename T>
void pack_b(const T* b, int64_t sk, int64_t sn, int64_t kc, int64_t cols, T* dst) {
  constexpr int64_t NR = Tiles<T>::kNR;
  for (int64_t j0 = 0; j0 < cols; j0 += NR) {
    const int64_t nr = std::min(NR, cols - j0);
    for (int64_t k = 0; k < kc; ++k) {
      const T* row = b + k * sk + j0 * sn;
      T* d = dst + k * NR;
      if (sn == 1) {
        for (int64_t j = 0; j < nr; ++j) d[j] = row[j];
      } else {
        for (int64_t j = 0; j < nr; ++j) d[j] = row[j * sn];
      }
      for (int64_t j = nr; j < NR; ++j) d[j] = T(0);
    }
    dst += NR * kc;
  }
}

// c[0..mr) x [0..nr) (row stride ldc) += packed A strip (kc x MR) times packed B strip (kc x NR).
template <typename T>
void micro_kernel(int64_t kc, const T* __restrict ap, const T* __restrict bp, T* c, int64_t ldc, int64_t mr,
                  int64_t nr) {
  constexpr int64_t MR = Tiles<T>::kMR, NR = Tiles<T>::kNR;
  T acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const T* b = bp + k * NR;
    const T* a = ap + k * MR;
    for (int64_t i = 0; i < MR; ++i)
      for (int64_t j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
  }
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t j = 0; j < nr; ++j) c[i * ldc + j] += acc[i][j];
}

template <typename T>
void gemm(const Operand& A, const Operand& B, T* out, int64_t batch, int64_t m, int64_t n, int64_t k) {
  constexpr int64_t MR = Tiles<T>::kMR, NR = Tiles<T>::kNR;
  const int64_t row_blocks = (m + kMC - 1) / kMC;
  const int64_t cost = std::min(m, kMC) * n * k;  // multiply-adds per work item
  parallel_for(batch * row_blocks, cost, [&](int64_t begin, int64_t end) {
    // Per-thread packing buffers, reused across calls.
    thread_local std::vector<T> abuf, bbuf;
    abuf.resize(static_cast<size_t>(((kMC + MR - 1) / MR) * MR * kKC));
    bbuf.resize(static_cast<size_t>(((kNC + NR - 1) / NR) * NR * kKC));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t bi = item / row_blocks;
      const int64_t i0 = (item % row_blocks) * kMC;
      const int64_t mc = std::min(kMC, m - i0);
      const T* a = reinterpret_cast<const T*>(A.base) + bi * A.sb + i0 * A.sr;
      const T* b = reinterpret_cast<const T*>(B.base) + bi * B.sb;
      T* c = out + (bi * m + i0) * n;
      std::memset(c, 0, static_cast<size_t>(mc * n) * sizeof(T));
      for (int64_t j0 = 0; j0 < n; j0 += kNC) {
        const int64_t nc = std::min(kNC, n - j0);
        for (int64_t p0 = 0; p0 < k; p0 += kKC) {
          const int64_t kc = std::min(kKC, k - p0);
          pack_b(b + p0 * B.sr + j0 * B.sc, B.sr, B.sc, kc, nc, bbuf.data());
          pack_a(a + p0 * A.sc, A.sr, A.sc, mc, kc, abuf.data());
          for (int64_t jr = 0; jr < nc; jr += NR) {
            const T* bp = bbuf.data() + (jr / NR) * NR * kc;
            for (int64_t ir = 0; ir < mc; ir += MR) {
              const T* ap = abuf.data() + (ir / MR) * MR * kc;
              micro_kernel(kc, ap, bp, c + ir * n + j0 + jr, n, std::min(MR, mc - ir), std::min(NR, nc - jr));
            }
          }
        }
      }
    }
  });
}

}  // namespace

void matmul(const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t batch = out.shape()[0], m = out.shape()[1], n = out.shape()[2], k = a.shape()[2];
  if (batch * m * n == 0) return;
  const Operand A{bytes(a), a.strides()[0], a.strides()[1], a.strides()[2]};
  const Operand B{bytes(b), b.strides()[0], b.strides()[1], b.strides()[2]};
  dispatch_floating(out.dtype(), "matmul", [&]<typename T>() {
    T* c = out.data_ptr<T>();
    if (k == 0) {
      std::memset(c, 0, static_cast<size_t>(batch * m * n) * sizeof(T));
      return;
    }
    gemm<T>(A, B, c, batch, m, n, k);
  });
}

}  // namespace mg::cpu
