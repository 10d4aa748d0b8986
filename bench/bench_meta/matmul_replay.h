#pragma once
// A meta-step's matrix products alone: the calls one metagrad step makes (mg::MatmulTrace),
// replayed with the same shapes and operand layouts through metagrad's CPU GEMM and through
// OpenBLAS, on operands made once outside the timing. Set against the whole step, it says how
// much of the step the products take and how far a faster GEMM alone could take it.
#include <map>
#include <memory>
#include <vector>

#include <metagrad/metagrad.h>

#include "workloads.h"

namespace mg_bench {

class MatmulReplay {
 public:
  // Records the calls of one step of metagrad's variant of the workload on the given path.
  MatmulReplay(Workload workload, Path path);
  ~MatmulReplay();

  const std::vector<mg::MatmulCall>& calls() const { return calls_; }
  double flops() const;  // 2 m n k per product, every batch entry counted

  // Every call, in the step's order, through metagrad's CPU GEMM (the kernel the step's matmul,
  // its backward and the convolutions reach, without the ops around it).
  void run_mg();
#ifdef MG_BENCH_HAVE_OPENBLAS
  // Every call through cblas_sgemm / cblas_dgemm: one call for a batch that one product can
  // express (a shared right operand folds the batch into the rows, a batch summed from
  // A^T-layout and row-major operands folds into the depth), otherwise one call per batch entry
  // (accumulating for a summed batch). A strided operand, which BLAS cannot read, is given to it
  // row-major.
  void run_openblas();
  // The largest difference between the two libraries' outputs over the calls, relative to the
  // largest magnitude of each call's output: a check that both compute the same products.
  double max_relative_difference();
#endif
  // One line per distinct shape and layout: calls, GFLOP per step, and the best of a few timed
  // replays of those calls through each library (bench_meta --matmul-shapes <workload>).
  void print_shape_table();

 private:
  struct Operands;
  const Operands& operands_for(const mg::MatmulCall& call);
  void run_mg_call(std::size_t i);
#ifdef MG_BENCH_HAVE_OPENBLAS
  void run_openblas_call(std::size_t i);
#endif

  std::vector<mg::MatmulCall> calls_;
  // Calls of the same shape and layout share operands, which keeps W-omni's within memory.
  std::vector<const Operands*> operands_of_call_;
  std::map<mg::MatmulCall, std::unique_ptr<Operands>> operands_;
};

}  // namespace mg_bench
