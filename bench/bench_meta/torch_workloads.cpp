// The same meta-steps in LibTorch, written functionally as a MAML implementation in PyTorch
// would be (higher / learn2learn style): parameters as a list of tensors, inner gradients from
// torch::autograd::grad with create_graph, fast weights p - lr * g, and the layers as
// torch::nn::functional / at:: ops. The parameters and tasks are copies of metagrad's
// (make_workload_data), so both libraries compute the same losses on the same numbers.
#ifdef MG_BENCH_HAVE_TORCH

#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "workloads.h"

namespace mg_bench {
namespace {

using TensorList = std::vector<torch::Tensor>;
using Forward = std::function<torch::Tensor(const TensorList& params, const torch::Tensor& x)>;
using Loss = std::function<torch::Tensor(const torch::Tensor& output, const torch::Tensor& target)>;

torch::Tensor to_torch(const mg::Tensor& t) {
  const mg::Tensor c = t.detach().contiguous();
  const std::vector<int64_t> shape(c.shape().begin(), c.shape().end());
  if (c.dtype() == mg::kInt64) return torch::from_blob(c.data_ptr<int64_t>(), shape, torch::kInt64).clone();
  return torch::from_blob(c.data_ptr<float>(), shape, torch::kFloat32).clone();
}

// The meta-parameters as LibTorch leaves, in metagrad's order, found by metagrad's names.
class NamedParams {
 public:
  explicit NamedParams(const mg::nn::TensorDict& params) {
    for (const auto& [name, t] : params) {
      names_.push_back(name);
      leaves_.push_back(to_torch(t).requires_grad_());
    }
  }
  std::size_t index(const std::string& name) const {
    for (std::size_t i = 0; i < names_.size(); ++i)
      if (names_[i] == name) return i;
    throw std::runtime_error("no parameter named '" + name + "'");
  }
  const TensorList& leaves() const { return leaves_; }

 private:
  std::vector<std::string> names_;
  TensorList leaves_;
};

// ---- models ---------------------------------------------------------------------------------

Forward mlp(const NamedParams& p) {
  const std::size_t w1 = p.index("body.0.weight"), b1 = p.index("body.0.bias"), w2 = p.index("body.2.weight"),
                    b2 = p.index("body.2.bias"), w3 = p.index("head.weight"), b3 = p.index("head.bias");
  return [=](const TensorList& q, const torch::Tensor& x) {
    namespace F = torch::nn::functional;
    torch::Tensor h = torch::relu(F::linear(x, q[w1], q[b1]));
    h = torch::relu(F::linear(h, q[w2], q[b2]));
    return F::linear(h, q[w3], q[b3]);
  };
}

// Per-task weights [T, out, in] and inputs [T, N, in]: every layer one bmm for the meta-batch.
Forward mlp_task_batched(const NamedParams& p) {
  const std::size_t w1 = p.index("body.0.weight"), b1 = p.index("body.0.bias"), w2 = p.index("body.2.weight"),
                    b2 = p.index("body.2.bias"), w3 = p.index("head.weight"), b3 = p.index("head.bias");
  return [=](const TensorList& q, const torch::Tensor& x) {
    auto linear = [](const torch::Tensor& in, const torch::Tensor& w, const torch::Tensor& b) {
      return torch::baddbmm(b.unsqueeze(1), in, w.transpose(1, 2));
    };
    torch::Tensor h = torch::relu(linear(x, q[w1], q[b1]));
    h = torch::relu(linear(h, q[w2], q[b2]));
    return linear(h, q[w3], q[b3]);
  };
}

Forward conv4(const NamedParams& p) {
  struct Block {
    std::size_t conv_w, conv_b, bn_w, bn_b;
  };
  std::vector<Block> blocks;
  for (int b = 0; b < 4; ++b) {
    const std::string prefix = "blocks." + std::to_string(b) + ".";
    blocks.push_back({p.index(prefix + "conv.weight"), p.index(prefix + "conv.bias"), p.index(prefix + "bn.weight"),
                      p.index(prefix + "bn.bias")});
  }
  const std::size_t head_w = p.index("head.weight"), head_b = p.index("head.bias");
  return [=](const TensorList& q, const torch::Tensor& x) {
    torch::Tensor h = x;
    for (const Block& b : blocks) {
      h = torch::conv2d(h, q[b.conv_w], q[b.conv_b], 1, 1);
      // Training-mode batch statistics and no running statistics, as metagrad's transductive mode.
      h = torch::batch_norm(h, q[b.bn_w], q[b.bn_b], {}, {}, true, 0.1, 1e-5, false);
      h = torch::max_pool2d(torch::relu(h), 2);
    }
    return torch::nn::functional::linear(h.flatten(1), q[head_w], q[head_b]);
  };
}

// Embedding + learned positions, pre-norm encoder layers with attention written out (matmul,
// masked softmax, matmul, as metagrad's), final LayerNorm, mean over non-padding positions, head.
Forward transformer(const NamedParams& p, const mg::meta::TransformerClassifierOptions& o) {
  struct Layer {
    std::size_t in_w, in_b, out_w, out_b, l1_w, l1_b, l2_w, l2_b, n1_w, n1_b, n2_w, n2_b;
  };
  std::vector<Layer> layers;
  for (int64_t l = 0; l < o.layers; ++l) {
    const std::string s = "encoder.layers." + std::to_string(l) + ".";
    layers.push_back({p.index(s + "self_attn.in_proj_weight"), p.index(s + "self_attn.in_proj_bias"),
                      p.index(s + "self_attn.out_proj.weight"), p.index(s + "self_attn.out_proj.bias"),
                      p.index(s + "linear1.weight"), p.index(s + "linear1.bias"), p.index(s + "linear2.weight"),
                      p.index(s + "linear2.bias"), p.index(s + "norm1.weight"), p.index(s + "norm1.bias"),
                      p.index(s + "norm2.weight"), p.index(s + "norm2.bias")});
  }
  const std::size_t embed = p.index("embed.weight"), pos = p.index("pos"), norm_w = p.index("encoder.norm.weight"),
                    norm_b = p.index("encoder.norm.bias"), head_w = p.index("head.weight"),
                    head_b = p.index("head.bias");
  const int64_t E = o.d_model, H = o.heads, D = E / H, pad = o.pad_id;
  return [=](const TensorList& q, const torch::Tensor& tokens) {
    namespace F = torch::nn::functional;
    const int64_t B = tokens.size(0), L = tokens.size(1);
    const torch::Tensor is_pad = tokens.eq(pad);
    const torch::Tensor keep = (1.0 - is_pad.to(torch::kFloat32)).unsqueeze(-1);
    const torch::Tensor counts = keep.sum(1);
    const torch::Tensor blocked = is_pad.view({B, 1, 1, L});
    auto norm = [&](const torch::Tensor& x, std::size_t w, std::size_t b) {
      return torch::layer_norm(x, {E}, q[w], q[b], 1e-5);
    };
    auto heads = [&](const torch::Tensor& t) { return t.reshape({B, L, H, D}).transpose(1, 2); };
    torch::Tensor h = torch::embedding(q[embed], tokens) + q[pos].narrow(0, 0, L);
    for (const Layer& l : layers) {
      const std::vector<torch::Tensor> qkv = F::linear(norm(h, l.n1_w, l.n1_b), q[l.in_w], q[l.in_b]).chunk(3, -1);
      torch::Tensor scores =
          torch::matmul(heads(qkv[0]) / std::sqrt(static_cast<double>(D)), heads(qkv[1]).transpose(-2, -1));
      scores = scores.masked_fill(blocked, -1e30);
      const torch::Tensor attn = torch::matmul(torch::softmax(scores, -1), heads(qkv[2]));
      h = h + F::linear(attn.transpose(1, 2).reshape({B, L, E}), q[l.out_w], q[l.out_b]);
      h = h + F::linear(torch::relu(F::linear(norm(h, l.n2_w, l.n2_b), q[l.l1_w], q[l.l1_b])), q[l.l2_w], q[l.l2_b]);
    }
    h = norm(h, norm_w, norm_b);
    return F::linear((h * keep).sum(1) / counts, q[head_w], q[head_b]);
  };
}

// ---- meta-steps -----------------------------------------------------------------------------

struct TorchTask {
  torch::Tensor sx, sy, qx, qy;
};

void clear_grads(const TensorList& leaves) {
  for (const auto& p : leaves) p.mutable_grad() = torch::Tensor();
}

TensorList sgd_step(const TensorList& fast, const torch::Tensor& loss, double lr) {
  // Second order: the inner gradients stay differentiable.
  const TensorList grads = torch::autograd::grad({loss}, fast, {}, true, true);
  TensorList next;
  next.reserve(fast.size());
  for (std::size_t i = 0; i < fast.size(); ++i) next.push_back(fast[i] - lr * grads[i]);
  return next;
}

// One task at a time, backward per task, as metagrad's looped path.
class TorchLooped final : public MetaStep {
 public:
  explicit TorchLooped(Workload workload) : spec_(workload_spec(workload)) {
    const WorkloadData data = make_workload_data(workload);
    params_ = std::make_unique<NamedParams>(data.params);
    switch (workload) {
      case Workload::Sin:
        forward_ = mlp(*params_);
        break;
      case Workload::Omni:
        forward_ = conv4(*params_);
        break;
      case Workload::Tf:
        forward_ = transformer(*params_, static_cast<const mg::meta::TransformerClassifier&>(*data.model).options());
        break;
    }
    if (spec_.regression)
      loss_ = [](const torch::Tensor& out, const torch::Tensor& y) { return torch::mse_loss(out, y); };
    else
      loss_ = [](const torch::Tensor& out, const torch::Tensor& y) {
        return torch::nn::functional::cross_entropy(out, y);
      };
    const TorchTask all{to_torch(data.batch.support_x), to_torch(data.batch.support_y), to_torch(data.batch.query_x),
                        to_torch(data.batch.query_y)};
    for (int64_t t = 0; t < data.batch.size(); ++t) tasks_.push_back({all.sx[t], all.sy[t], all.qx[t], all.qy[t]});
  }

  double run() override {
    clear_grads(params_->leaves());
    const double scale = 1.0 / static_cast<double>(tasks_.size());
    double total = 0.0;
    for (const TorchTask& task : tasks_) {
      TensorList fast = params_->leaves();
      for (int s = 0; s < spec_.inner_steps; ++s)
        fast = sgd_step(fast, loss_(forward_(fast, task.sx), task.sy), spec_.inner_lr);
      const torch::Tensor loss = loss_(forward_(fast, task.qx), task.qy);
      total += loss.item<double>();
      (loss * scale).backward();
    }
    return total * scale;
  }

 private:
  const WorkloadSpec& spec_;
  std::unique_ptr<NamedParams> params_;
  Forward forward_;
  Loss loss_;
  std::vector<TorchTask> tasks_;
};

// W-sin over the whole meta-batch at once: parameters expanded to [T, ...], bmm per layer, the
// support loss summed over tasks so that its gradient is every task's own.
class TorchBatchedSin final : public MetaStep {
 public:
  TorchBatchedSin() : spec_(workload_spec(Workload::Sin)) {
    const WorkloadData data = make_workload_data(Workload::Sin);
    params_ = std::make_unique<NamedParams>(data.params);
    forward_ = mlp_task_batched(*params_);
    batch_ = {to_torch(data.batch.support_x), to_torch(data.batch.support_y), to_torch(data.batch.query_x),
              to_torch(data.batch.query_y)};
  }

  double run() override {
    clear_grads(params_->leaves());
    const int64_t T = batch_.sx.size(0);
    auto per_task_mse = [](const torch::Tensor& out, const torch::Tensor& y) { return (out - y).pow(2).mean({1, 2}); };
    TensorList fast;
    for (const auto& p : params_->leaves()) {
      std::vector<int64_t> shape{T};
      shape.insert(shape.end(), p.sizes().begin(), p.sizes().end());
      fast.push_back(p.unsqueeze(0).expand(shape));
    }
    for (int s = 0; s < spec_.inner_steps; ++s)
      fast = sgd_step(fast, per_task_mse(forward_(fast, batch_.sx), batch_.sy).sum(), spec_.inner_lr);
    const torch::Tensor loss = per_task_mse(forward_(fast, batch_.qx), batch_.qy).mean();
    loss.backward();
    return loss.item<double>();
  }

 private:
  const WorkloadSpec& spec_;
  std::unique_ptr<NamedParams> params_;
  Forward forward_;
  TorchTask batch_;
};

}  // namespace

std::unique_ptr<MetaStep> make_torch_step(Workload workload, Path path) {
  if (path == Path::Batched) {
    if (workload != Workload::Sin) throw std::runtime_error("LibTorch has a task-batched form of W-sin only");
    return std::make_unique<TorchBatchedSin>();
  }
  return std::make_unique<TorchLooped>(workload);
}

}  // namespace mg_bench

#endif  // MG_BENCH_HAVE_TORCH
