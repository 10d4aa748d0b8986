#pragma once
// Gradient checkpointing (as torch.utils.checkpoint): trade compute for memory by keeping only a
// segment's inputs on the tape and rebuilding the segment's graph when backward reaches it.
//
//   TensorList out = checkpoint([&](const TensorList& in) { return TensorList{f(in[0], in[1])}; }, {a, b});
//
// fn is called twice, each time on detached copies of the inputs:
//   - at once, with recording off. Code in fn that needs autograd for its values (an inner
//     gradient) turns recording on for itself and makes its own copies that require grad;
//     GradMode::is_enabled() is false in this call and true in the next.
//   - when backward reaches the segment, with recording on and the inputs that need a gradient
//     requiring grad; the segment's gradients are a backward pass through that rebuilt graph.
// fn must compute the same values both times: random numbers drawn from default_generator() are
// replayed (its state is restored around the second call); draws from other generators are not,
// and neither is any state fn reads that changed in between. Every tensor fn uses that requires
// grad must come in through inputs: gradients reach the inputs only. Both are checked during the
// recomputation (outputs compared with the first ones; the rebuilt graph must end at the
// inputs), so a violation is an mg::Error, never a silently wrong gradient.
//
// Differentiating a checkpointed backward again (create_graph) is supported: the segment is then
// rebuilt on the inputs themselves, so the gradient's graph reaches them (and keeps that graph).
#include <functional>
#include <string>

#include "node.h"

namespace mg {

using CheckpointFn = std::function<TensorList(const TensorList& inputs)>;

struct CheckpointOptions {
  std::string name = "checkpoint";  // names the segment in errors and in to_dot()
  // Compare the recomputed outputs with the first ones (bitwise). Turn off only for an fn whose
  // kernels are not bitwise reproducible.
  bool check_recomputation = true;
  // Put default_generator() back where the first run found it for the recomputation. Turn off
  // only for an fn that draws no random numbers and may be recomputed on several threads at
  // once (the generator is one for the process).
  bool replay_random = true;
};

// Returns fn(inputs). When recording is on and an input requires grad, every floating output
// requires grad and their gradients reach the inputs through one recomputation of fn; the tape
// holds the inputs (version-checked, like saved tensors), the outputs' values and fn, nothing of
// fn's graph. fn (and what it captures) must stay valid until the backward pass.
TensorList checkpoint(const CheckpointFn& fn, const TensorList& inputs, const CheckpointOptions& options = {});

}  // namespace mg
