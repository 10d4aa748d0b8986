// Batched GEMM: out[b] = a[b] @ b[b] with a [B,M,K], b [B,K,N] of any strides (a transposed
// operand is a stride swap, a broadcast batch has stride 0) and out [B,M,N] contiguous.
//
// The Goto / BLIS scheme; the instruction-set specific micro-kernels and their block sizes come
// from a table picked at run time (cpu_gemm_kernels.h):
//   work item = (batch, block of nc columns, chunk of rows)         <- threads split these
//     for each kc block of the K dim: pack B[kc, nc] into nr-column panels (L3, reused below)
//       for each mc block of the rows: pack A[mc, kc] into mr-row panels (L2)
//         for each B panel (L1), for each A panel: one mr x nr register tile,
//         stored on the first kc block and added on the others (no memset of out).
// Packing turns any strides into unit-stride, zero-padded streams, so transposes cost no copy.
#include "cpu_gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "../flop_count.h"
#include "../matmul_trace.h"
#include "cpu_allocator.h"
#include "cpu_gemm_kernels.h"
#include "cpu_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mg::cpu {
namespace {

// Below this many flops a GEMM stays on the calling thread: waking the pool costs microseconds
// on an idle machine and up to a scheduler time slice (milliseconds) on a busy one, where a
// 128^3 product (4 MFLOP) went from 20 us on one thread to 14 ms on two.
[[maybe_unused]] constexpr double kParallelFlops = 8e6;  // used only with OpenMP

// Kernels that can read B in place do so when it has unit-stride columns and is small enough to
// stay in L2 across the tiles: packing it would cost about as much as the product itself.
constexpr int64_t kDirectBBytes = 128 << 10;

// A broadcast A (batch stride 0, a convolution's weight over a group of images) up to this size
// is packed whole, once per work item range, instead of once per batch entry and column block:
// for a 3x3 convolution over a 3x3 or 7x7 image, packing the weight cost more than the product.
constexpr int64_t kPackedWholeABytes = 1 << 20;

// Kernels that can read A in place do so when all of it fits in L1 (a small model's activations
// or weights): packing it cost about as much as the product (W-sin: 7% of its step). So they do
// for an A that fits in L2 when the product has at most two column tiles: each tile reads A once,
// where packing would read and write it (x @ W for a [400, 64] x and a 64 x 64 W: 174 -> 199
// GFLOP/s; [2000, 16] @ [16, 16]: 97 -> 134). With more column tiles, or an A from memory
// ([5000, 64]: 158 -> 150), packing pays off.
constexpr int64_t kDirectABytes = 32 << 10;
constexpr int64_t kDirectANarrowBytes = 256 << 10;
constexpr int64_t kDirectANarrowColumnTiles = 2;

// A narrow product runs as its transpose (gemm below) only when each output sums at least this
// many terms: the saving grows with them, the copy back into place does not.
constexpr int64_t kTransposedMinTerms = 256;

const GemmKernels* kernels_named(std::string_view name) {
  if (name == "avx512") return gemm_kernels_avx512();
  if (name == "avx2") return gemm_kernels_avx2();
  if (name == "generic") return gemm_kernels_generic();
  return nullptr;
}

const GemmKernels* best_kernels() {
  if (const GemmKernels* k = gemm_kernels_avx512()) return k;
  if (const GemmKernels* k = gemm_kernels_avx2()) return k;
  return gemm_kernels_generic();
}

std::atomic<const GemmKernels*>& current_kernels() {
  static std::atomic<const GemmKernels*> current{[] {
    const char* env = std::getenv("MG_GEMM_KERNEL");
    const GemmKernels* forced = env ? kernels_named(env) : nullptr;
    return forced ? forced : best_kernels();
  }()};
  return current;
}

// A per-thread, 64-byte aligned packing buffer that only grows: no allocation per call.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { release(); }

  template <typename T>
  T* get(int64_t count) {
    const size_t bytes = static_cast<size_t>(count) * sizeof(T);
    if (bytes > bytes_) {
      release();
      data_ = allocate_uncached(bytes);
      if (data_ == nullptr) throw std::bad_alloc();
      bytes_ = bytes;
    }
    return static_cast<T*>(data_);
  }

 private:
  void release() {
    free_uncached(data_);
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

thread_local Scratch t_pack_a, t_pack_b, t_transposed_out;

struct Operand {
  const char* base;
  int64_t sb, sr, sc;  // element strides of batch, row, column
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Splits extent into equal blocks of at most max_block, rounded up to a multiple of unit, so the
// last block is not a sliver.
int64_t even_block(int64_t extent, int64_t max_block, int64_t unit) {
  const int64_t block = ceil_div(extent, ceil_div(extent, max_block));
  return std::min(ceil_div(block, unit) * unit, std::max(max_block, unit));
}

// The share of the register tiles' lanes that an m x n product's outputs fill.
double tile_fill(int64_t m, int64_t n, int64_t mr, int64_t nr) {
  return static_cast<double>(m) / static_cast<double>(ceil_div(m, mr) * mr) * static_cast<double>(n) /
         static_cast<double>(ceil_div(n, nr) * nr);
}

// out[b] = A[b] @ B[b] for each b, or, with sum_batch, out = the sum of them: the reduction runs
// on through the batch (each tile accumulates batch after batch), so the batch is walked inside
// a work item rather than split across threads.
template <typename T>
void gemm(const GemmKernel<T>& kr, const Operand& A, const Operand& B, T* out, int64_t batch, int64_t m, int64_t n,
          int64_t k, bool sum_batch = false) {
  // A right operand shared by the batch (a weight) under A matrices that follow one another row
  // after row: one product of batch * m rows, which fills the tiles that m rows alone would not
  // (W-sin's [25, 10, 40] @ [40, 1]: 25 products of 10 rows).
  if (!sum_batch && batch > 1 && B.sb == 0 && A.sb == m * A.sr)
    return gemm(kr, Operand{A.base, 0, A.sr, A.sc}, B, out, 1, batch * m, n, k, false);
  // Outer products (k = 1) narrower than a tile, without the tiles: their fixed costs and masked
  // lanes were all of the work (W-sin's [25, 40, 1] @ [25, 1, 10]: 7 -> 2.5 us). Each output is
  // the product plus zero, as the tiles' fused multiply-add into a zeroed register gives it (-0
  // becomes +0).
  if (k == 1 && !sum_batch && n < kr.nr) {
    const T* a = reinterpret_cast<const T*>(A.base);
    const T* b = reinterpret_cast<const T*>(B.base);
    for (int64_t bi = 0; bi < batch; ++bi)
      for (int64_t i = 0; i < m; ++i) {
        const T ai = a[bi * A.sb + i * A.sr];
        const T* bj = b + bi * B.sb;
        T* c = out + (bi * m + i) * n;
        if (B.sc == 1) {
          for (int64_t j = 0; j < n; ++j) c[j] = ai * bj[j] + T(0);
        } else {
          for (int64_t j = 0; j < n; ++j) c[j] = ai * bj[j * B.sc] + T(0);
        }
      }
    return;
  }
  // A matrix-vector product (n = 1) as its transpose, out^T [1, m] = B^T A^T: the same m outputs
  // in the same place, each summed in the same order, from tiles of one row of full vectors
  // instead of m / mr tiles of one lane each (W-sin's [40, 10] @ [10, 1]: 2.5x faster).
  if (n == 1 && m > 1)
    return gemm(kr, Operand{B.base, B.sb, B.sc, B.sr}, Operand{A.base, A.sb, A.sc, A.sr}, out, batch, 1, m, k,
                sum_batch);
  const int64_t MR = kr.mr, NR = kr.nr;
  // A narrow product (n well under a tile's width, m over it) as its transpose, out^T = B^T A^T,
  // into scratch, when that uses more of each register tile: a first convolution's weight
  // gradient, [64, 784] @ [784, 9] summed over 74 images, used 9 of each 14 x 32 tile's 32
  // columns, and uses 9 of its 14 rows transposed (61 -> 35 ms a W-omni step). The same products
  // summed in the same order, so the same bits. Only where each output sums enough terms to pay
  // for the strided copy back (W-sin's [25, 40, 40] @ [25, 40, 10] lost more to it than it gained).
  const int64_t terms = k * (sum_batch ? batch : 1);
  if (n < m && terms >= kTransposedMinTerms && tile_fill(n, m, MR, NR) > 1.5 * tile_fill(m, n, MR, NR)) {
    const int64_t outputs = sum_batch ? 1 : batch;
    T* transposed = t_transposed_out.get<T>(outputs * m * n);
    gemm(kr, Operand{B.base, B.sb, B.sc, B.sr}, Operand{A.base, A.sb, A.sc, A.sr}, transposed, batch, n, m, k,
         sum_batch);
    for (int64_t b = 0; b < outputs; ++b)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) out[(b * m + i) * n + j] = transposed[(b * n + j) * m + i];
    return;
  }
  const int64_t KC = even_block(k, kr.kc, 1);
  const int64_t MC = even_block(m, kr.mc, MR);
  const int64_t NC = even_block(n, kr.nc, NR);
  const int64_t col_blocks = ceil_div(n, NC);
  const int64_t row_tiles = ceil_div(m, MR);

  int64_t threads = 1;
#ifdef _OPENMP
  const double flops =
      2.0 * static_cast<double>(batch) * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  if (flops >= kParallelFlops && !omp_in_parallel()) threads = omp_get_max_threads();
#endif
  // Rows are split too when (batch x column blocks) alone would leave a thread idle or unbalanced.
  const int64_t outer = (sum_batch ? 1 : batch) * col_blocks;
  const int64_t row_chunks =
      threads > 1 && outer % threads != 0 && outer < 4 * threads ? std::min(threads, row_tiles) : 1;
  const int64_t items = outer * row_chunks;
  threads = std::min(threads, items);

  const bool direct_b = kr.direct_b && B.sc == 1 && k * n * static_cast<int64_t>(sizeof(T)) <= kDirectBBytes;
  const int64_t padded_rows = row_tiles * MR;
  const bool whole_a = A.sb == 0 && (sum_batch ? batch : batch * col_blocks) > 1 &&
                       padded_rows * k * static_cast<int64_t>(sizeof(T)) <= kPackedWholeABytes;
  const int64_t a_bytes = m * k * static_cast<int64_t>(sizeof(T));
  const bool direct_a =
      kr.tile_direct_a != nullptr && !whole_a &&
      (a_bytes <= kDirectABytes || (a_bytes <= kDirectANarrowBytes && ceil_div(n, NR) <= kDirectANarrowColumnTiles));

  // Products with A read in place and one block in every dimension (a small model's layers, per
  // task): the tiles straight off the batch, B packed per batch entry unless it too is read in
  // place, without the work items' index arithmetic (several 64-bit divisions per batch entry),
  // which cost as much as the tiles of W-sin's [25, 40, 10] @ [25, 10, 40]. The same tiles in
  // the same order as below.
  if (threads == 1 && direct_a && k <= KC && n <= NC) {
    T* bbuf = direct_b ? nullptr : t_pack_b.get<T>(k * ceil_div(n, NR) * NR);
    for (int64_t bi = 0; bi < batch; ++bi) {
      const T* a = reinterpret_cast<const T*>(A.base) + bi * A.sb;
      const T* b = reinterpret_cast<const T*>(B.base) + bi * B.sb;
      T* c = out + (sum_batch ? 0 : bi * m * n);
      const bool accumulate = sum_batch && bi > 0;
      if (!direct_b && (bi == 0 || B.sb != 0)) kr.pack_b(b, B.sr, B.sc, k, n, bbuf);
      for (int64_t j0 = 0; j0 < n; j0 += NR) {
        const T* bp = direct_b ? b + j0 : bbuf + j0 * k;
        const int64_t ldb = direct_b ? B.sr : NR, nr = std::min(NR, n - j0);
        for (int64_t i0 = 0; i0 < m; i0 += MR)
          kr.tile_direct_a(k, a + i0 * A.sr, A.sr, A.sc, bp, ldb, c + i0 * n + j0, n, std::min(MR, m - i0), nr,
                           accumulate);
      }
    }
    return;
  }

  auto run = [&](int64_t begin, int64_t end) {
    T* bbuf = direct_b ? nullptr : t_pack_b.get<T>(KC * ceil_div(NC, NR) * NR);
    T* abuf = t_pack_a.get<T>(whole_a ? padded_rows * k : KC * ceil_div(MC, MR) * MR);
    // A broadcast B (batch stride 0) is packed once for all the batches it serves.
    const T* packed_src = nullptr;
    int64_t packed_kc = 0, packed_nc = 0;
    // With whole_a, the rows [r0, r1) of A as packed blocks: block (p0, i0) at
    // p0 * (r1 - r0 rounded up to MR) + (i0 - r0) * kc.
    int64_t packed_a_rows = -1;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t chunk = item % row_chunks;
      const int64_t jb = (item / row_chunks) % col_blocks;
      const int64_t first = sum_batch ? 0 : item / (row_chunks * col_blocks);
      const int64_t r0 = row_tiles * chunk / row_chunks * MR;
      const int64_t r1 = std::min(m, row_tiles * (chunk + 1) / row_chunks * MR);
      const int64_t j0 = jb * NC;
      const int64_t nc = std::min(NC, n - j0);
      const int64_t chunk_rows = ceil_div(r1 - r0, MR) * MR;
      if (whole_a && packed_a_rows != r0) {
        const T* a = reinterpret_cast<const T*>(A.base);
        for (int64_t p0 = 0; p0 < k; p0 += KC)
          for (int64_t i0 = r0; i0 < r1; i0 += MC)
            kr.pack_a(a + i0 * A.sr + p0 * A.sc, A.sr, A.sc, std::min(MC, r1 - i0), std::min(KC, k - p0),
                      abuf + p0 * chunk_rows + (i0 - r0) * std::min(KC, k - p0));
        packed_a_rows = r0;
      }
      for (int64_t bi = first; bi < (sum_batch ? batch : first + 1); ++bi) {
        const T* a = reinterpret_cast<const T*>(A.base) + bi * A.sb;
        const T* b = reinterpret_cast<const T*>(B.base) + bi * B.sb;
        T* c = out + (sum_batch ? 0 : bi * m * n);
        for (int64_t p0 = 0; p0 < k; p0 += KC) {
          const int64_t kc = std::min(KC, k - p0);
          const T* bsrc = b + p0 * B.sr + j0 * B.sc;
          if (!direct_b && (bsrc != packed_src || kc != packed_kc || nc != packed_nc)) {
            kr.pack_b(bsrc, B.sr, B.sc, kc, nc, bbuf);
            packed_src = bsrc;
            packed_kc = kc;
            packed_nc = nc;
          }
          for (int64_t i0 = r0; i0 < r1; i0 += MC) {
            const int64_t mc = std::min(MC, r1 - i0);
            const T* ap = abuf + (whole_a ? p0 * chunk_rows + (i0 - r0) * kc : 0);
            if (!whole_a && !direct_a) kr.pack_a(a + i0 * A.sr + p0 * A.sc, A.sr, A.sc, mc, kc, abuf);
            const int64_t ldb = direct_b ? B.sr : NR;
            for (int64_t jr = 0; jr < nc; jr += NR) {
              const T* bp = direct_b ? bsrc + jr : bbuf + jr * kc;
              T* cj = c + i0 * n + j0 + jr;
              const int64_t nr = std::min(NR, nc - jr);
              for (int64_t ir = 0; ir < mc; ir += MR) {
                const bool accumulate = p0 > 0 || bi > first;
                if (direct_a) {
                  kr.tile_direct_a(kc, a + (i0 + ir) * A.sr + p0 * A.sc, A.sr, A.sc, bp, ldb, cj + ir * n, n,
                                   std::min(MR, mc - ir), nr, accumulate);
                } else {
                  kr.tile(kc, ap + ir * kc, bp, ldb, cj + ir * n, n, std::min(MR, mc - ir), nr, accumulate);
                }
              }
            }
          }
        }
      }
    }
  };

#ifdef _OPENMP
  if (threads > 1) {
    const int team = static_cast<int>(threads);
#pragma omp parallel num_threads(team)
    {
      const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      run(items * t / nt, items * (t + 1) / nt);
    }
    return;
  }
#endif
  run(0, items);
}

}  // namespace

const char* gemm_kernel_name() { return current_kernels().load(std::memory_order_relaxed)->name; }

bool set_gemm_kernel(std::string_view name) {
  const GemmKernels* k = kernels_named(name);
  if (!k) return false;
  current_kernels().store(k, std::memory_order_relaxed);
  return true;
}

std::vector<std::string> gemm_kernels_supported() {
  std::vector<std::string> names;
  for (const GemmKernels* k : {gemm_kernels_avx512(), gemm_kernels_avx2(), gemm_kernels_generic()})
    if (k) names.emplace_back(k->name);
  return names;
}

namespace {

thread_local int64_t t_matmul_flops = 0;

MatrixLayout layout_of(const Operand& x) {
  if (x.sc == 1) return MatrixLayout::RowMajor;
  if (x.sr == 1) return MatrixLayout::ColumnMajor;
  return MatrixLayout::Strided;
}

void run_matmul(const Tensor& a, const Tensor& b, const Tensor& out, int64_t batch, bool sum_batch) {
  const int64_t m = out.shape()[1], n = out.shape()[2], k = a.shape()[2];
  t_matmul_flops += 2 * batch * m * n * k;
  if (m * n == 0) return;
  const Operand A{bytes(a), a.strides()[0], a.strides()[1], a.strides()[2]};
  const Operand B{bytes(b), b.strides()[0], b.strides()[1], b.strides()[2]};
  record_matmul_call(
      {batch, m, n, k, layout_of(A), layout_of(B), A.sb == 0, B.sb == 0, sum_batch, out.dtype() == kFloat64});
  const GemmKernels& kernels = *current_kernels().load(std::memory_order_relaxed);
  dispatch_floating(out.dtype(), "matmul", [&]<typename T>() {
    T* c = out.data_ptr<T>();
    if (k == 0 || batch == 0) {
      std::memset(c, 0, static_cast<size_t>(out.numel()) * sizeof(T));
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      gemm<T>(kernels.f32, A, B, c, batch, m, n, k, sum_batch);
    } else {
      gemm<T>(kernels.f64, A, B, c, batch, m, n, k, sum_batch);
    }
  });
}

}  // namespace

void matmul(const Tensor& a, const Tensor& b, const Tensor& out) { run_matmul(a, b, out, out.shape()[0], false); }

void matmul_sum(const Tensor& a, const Tensor& b, const Tensor& out) {
  run_matmul(a, b, out, std::max(a.shape()[0], b.shape()[0]), true);
}

}  // namespace mg::cpu

namespace mg {

int64_t cpu_matmul_flops_on_this_thread() { return cpu::t_matmul_flops; }

}  // namespace mg
