#include "matmul_trace.h"

namespace mg {
namespace {

thread_local MatmulTrace* t_innermost_trace = nullptr;

}  // namespace

MatmulTrace::MatmulTrace() : outer_(t_innermost_trace) { t_innermost_trace = this; }

MatmulTrace::~MatmulTrace() { t_innermost_trace = outer_; }

void record_matmul_call(const MatmulCall& call) {
  if (MatmulTrace* trace = t_innermost_trace) trace->calls_.push_back(call);
}

}  // namespace mg
