#pragma once
// The models the meta-learning literature uses, by name, each configurable:
//   - "mlp": the MAML paper's sinusoid regressor, 1-40-40-1 with ReLU;
//   - "conv4": 4 x [conv3x3 (hidden channels), BatchNorm, ReLU, maxpool 2] -> flatten -> linear
//     (Finn et al. 2017, Snell et al. 2017); without a head it is ProtoNets' embedding network;
//   - "transformer": byte embedding + learned positions -> pre-norm transformer encoder ->
//     mean over non-padding positions -> linear, for few-shot classification of token sequences.
// Every model puts its classifier or regressor output layer under the name "head" (ANIL adapts
// only "head.").
// Every model also runs a whole meta-batch at once when given per-task parameters, each with a
// leading task dim [T, ...] (nn/functional.h, meta/task_batched.h): its input and output then
// gain the same leading T.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../nn/batch_norm2d.h"
#include "../nn/module.h"
#include "../tensor/creation.h"

namespace mg::meta {

struct MlpModelOptions {
  int64_t in_features = 1;
  std::vector<int64_t> hidden{40, 40};
  int64_t out_features = 1;
};

// Hidden layers "body.0", "body.2", ... (Linear, ReLU alternating) and the output layer "head".
class MlpModel : public nn::Module {
 public:
  explicit MlpModel(const MlpModelOptions& options, Generator* gen = nullptr);
  std::string type_name() const override { return "MlpModel"; }
  using nn::Module::forward;
  Tensor forward(const nn::Params& params, const Tensor& x) override;
  const MlpModelOptions& options() const { return options_; }

 private:
  MlpModelOptions options_;
};

struct Conv4Options {
  int64_t in_channels = 1;
  int64_t image_size = 28;
  int64_t hidden = 64;  // channels of every block
  int64_t blocks = 4;
  int64_t ways = 5;  // outputs of the head; 0: no head (an embedding network, for ProtoNets)
  nn::BatchNormMode bn_mode = nn::BatchNormMode::Transductive;
  int64_t bn_steps = 1;  // PerStep: inner steps with their own statistics (steps + 1 for the query pass)
};

// Blocks "blocks.<i>.conv" / "blocks.<i>.bn" (ReLU and max-pool have no parameters), then "head".
class Conv4 : public nn::Module {
 public:
  explicit Conv4(const Conv4Options& options, Generator* gen = nullptr);
  std::string type_name() const override { return "Conv4"; }
  using nn::Module::forward;
  // x [B, C, S, S] -> logits [B, ways], or embeddings [B, hidden * s * s] without a head; with
  // per-task parameters, x [T, B, C, S, S] -> [T, B, ways].
  Tensor forward(const nn::Params& params, const Tensor& x) override;
  int64_t embedding_size() const;  // features entering the head
  const Conv4Options& options() const { return options_; }

 private:
  Conv4Options options_;
};

struct TransformerClassifierOptions {
  int64_t vocab = 256;
  int64_t max_len = 16;
  int64_t d_model = 64;
  int64_t heads = 4;
  int64_t layers = 2;
  int64_t dim_feedforward = 128;
  int64_t classes = 5;
  int64_t pad_id = 0;  // tokens equal to it are masked out of attention and of the mean
  double dropout = 0.0;
};

// "embed" (tokens), "pos" (a learned [max_len, d_model] table), "encoder" (pre-norm, with a final
// LayerNorm), "head".
class TransformerClassifier : public nn::Module {
 public:
  explicit TransformerClassifier(const TransformerClassifierOptions& options, Generator* gen = nullptr);
  std::string type_name() const override { return "TransformerClassifier"; }
  using nn::Module::forward;
  // tokens [B, L] int64 with L <= max_len -> logits [B, classes]. A sequence of only padding is
  // an error (it has nothing to average). With per-task parameters (pos [T, max_len, d_model]),
  // tokens [T, B, L] -> logits [T, B, classes].
  Tensor forward(const nn::Params& params, const Tensor& tokens) override;
  const TransformerClassifierOptions& options() const { return options_; }

 private:
  TransformerClassifierOptions options_;
};

// The names accepted by make_model: "mlp", "conv4", "transformer".
const std::vector<std::string>& model_names();

// A model by name with its defaults, adjusted by the task: outputs (1 for regression, ways for
// classification; 0 for an embedding network), input channels and image size for conv4, sequence
// length for the transformer. Throws mg::Error naming the known models for an unknown name.
struct ModelSpec {
  std::string name = "mlp";
  int64_t outputs = 1;
  int64_t in_channels = 1;
  int64_t image_size = 28;
  int64_t seq_len = 16;
  int64_t hidden = 0;  // 0: the model's default width (40 for mlp, 64 for conv4 and transformer)
  int64_t layers = 0;  // 0: the model's default depth (2 hidden layers, 4 blocks, 2 encoder layers)
  nn::BatchNormMode bn_mode = nn::BatchNormMode::Transductive;
  int64_t bn_steps = 1;
};
std::shared_ptr<nn::Module> make_model(const ModelSpec& spec, Generator* gen = nullptr);

}  // namespace mg::meta
