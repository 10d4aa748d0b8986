#include "models.h"

#include <cmath>
#include <string>

#include "../autograd/ops.h"
#include "../nn/activation.h"
#include "../nn/conv2d.h"
#include "../nn/embedding.h"
#include "../nn/functional.h"
#include "../nn/functional_conv.h"
#include "../nn/init.h"
#include "../nn/linear.h"
#include "../nn/max_pool2d.h"
#include "../nn/sequential.h"
#include "../nn/transformer.h"
#include "../tensor/device_graph.h"
#include "../tensor/error.h"
#include "../tensor/shape.h"

namespace mg::meta {

MlpModel::MlpModel(const MlpModelOptions& options, Generator* gen) : options_(options) {
  MG_CHECK(options.in_features >= 1 && options.out_features >= 1, "MlpModel: in and out features must be >= 1");
  auto body = std::make_shared<nn::Sequential>();
  int64_t width = options.in_features;
  for (int64_t h : options.hidden) {
    MG_CHECK(h >= 1, "MlpModel: hidden sizes must be >= 1, got ", h);
    body->push_back(std::make_shared<nn::Linear>(width, h, true, gen));
    body->push_back(std::make_shared<nn::ReLU>());
    width = h;
  }
  register_module("body", body);
  register_module("head", std::make_shared<nn::Linear>(width, options.out_features, true, gen));
}

Tensor MlpModel::forward(const nn::Params& params, const Tensor& x) {
  const Tensor h = child("body")->forward(params.sub("body"), x);
  return child("head")->forward(params.sub("head"), h);
}

namespace {

class ConvBlock : public nn::Module {
 public:
  ConvBlock(int64_t in, int64_t out, const Conv4Options& options, Generator* gen) {
    register_module("conv", std::make_shared<nn::Conv2d>(in, out, 3, 1, 1, true, gen));
    nn::BatchNorm2dOptions bn;
    bn.mode = options.bn_mode;
    bn.num_steps = options.bn_steps;
    register_module("bn", std::make_shared<nn::BatchNorm2d>(out, bn));
  }
  std::string type_name() const override { return "ConvBlock"; }
  using nn::Module::forward;
  Tensor forward(const nn::Params& params, const Tensor& x) override {
    Tensor h = child("conv")->forward(params.sub("conv"), x);
    h = child("bn")->forward(params.sub("bn"), h);
    // relu(max_pool(h)) is max_pool(relu(h)), the block's usual order (relu is monotone): the same
    // values, and the same gradients of every order (zero wherever a window's maximum is not
    // positive, either way), with relu and its backward on a quarter of the elements.
    return relu(nn::functional::over_task_images(h, [](const Tensor& images) { return max_pool2d(images, 2); }));
  }
};

}  // namespace

Conv4::Conv4(const Conv4Options& options, Generator* gen) : options_(options) {
  MG_CHECK(options.in_channels >= 1 && options.hidden >= 1 && options.blocks >= 1,
           "Conv4: in_channels, hidden and blocks must be >= 1");
  MG_CHECK(options.ways >= 0, "Conv4: ways must be >= 0 (0: no head), got ", options.ways);
  int64_t side = options.image_size;
  for (int64_t b = 0; b < options.blocks; ++b) side /= 2;
  MG_CHECK(side >= 1, "Conv4: image_size ", options.image_size, " is too small for ", options.blocks,
           " blocks of 2x2 pooling");
  auto blocks = std::make_shared<nn::Sequential>();
  for (int64_t b = 0; b < options.blocks; ++b)
    blocks->push_back(std::make_shared<ConvBlock>(b == 0 ? options.in_channels : options.hidden, options.hidden,
                                                  options, gen));
  register_module("blocks", blocks);
  if (options.ways > 0) register_module("head", std::make_shared<nn::Linear>(embedding_size(), options.ways, true, gen));
}

int64_t Conv4::embedding_size() const {
  int64_t side = options_.image_size;
  for (int64_t b = 0; b < options_.blocks; ++b) side /= 2;
  return options_.hidden * side * side;
}

Tensor Conv4::forward(const nn::Params& params, const Tensor& x) {
  // Per-task weights (nn/functional.h) take task-batched images [T, B, C, S, S].
  const bool per_task = params.sub("blocks").sub("0").sub("conv")["weight"].dim() == 5;
  const int64_t lead = per_task ? 2 : 1;
  MG_CHECK(x.dim() == lead + 3 && x.size(-3) == options_.in_channels && x.size(-2) == options_.image_size &&
               x.size(-1) == options_.image_size,
           "Conv4: expected input [", per_task ? "T, B" : "B", ", ", options_.in_channels, ", ", options_.image_size,
           ", ", options_.image_size, "], got ", shape_str(x.shape()));
  const Tensor h = child("blocks")->forward(params.sub("blocks"), x);
  Shape flat_shape(h.shape().begin(), h.shape().begin() + lead);
  flat_shape.push_back(-1);
  const Tensor flat = h.reshape(flat_shape);
  if (options_.ways == 0) return flat;
  return child("head")->forward(params.sub("head"), flat);
}

TransformerClassifier::TransformerClassifier(const TransformerClassifierOptions& options, Generator* gen)
    : options_(options) {
  MG_CHECK(options.vocab >= 1 && options.max_len >= 1 && options.classes >= 1,
           "TransformerClassifier: vocab, max_len and classes must be >= 1");
  MG_CHECK(options.heads >= 1 && options.d_model % options.heads == 0, "TransformerClassifier: d_model ",
           options.d_model, " is not divisible by ", options.heads, " heads");
  register_module("embed", std::make_shared<nn::Embedding>(options.vocab, options.d_model, std::nullopt, gen));
  // Small random positions, as GPT-2 initialises its learned position table.
  Tensor pos = zeros({options.max_len, options.d_model});
  nn::init::normal_(pos, 0.0, 0.02, gen);
  register_parameter("pos", pos);
  nn::TransformerLayerOptions layer{.d_model = options.d_model,
                                    .nhead = options.heads,
                                    .dim_feedforward = options.dim_feedforward,
                                    .dropout = options.dropout,
                                    .norm_first = true};
  register_module("encoder", std::make_shared<nn::TransformerEncoder>(layer, options.layers, true, gen));
  register_module("head", std::make_shared<nn::Linear>(options.d_model, options.classes, true, gen));
}

Tensor TransformerClassifier::forward(const nn::Params& params, const Tensor& tokens) {
  const Tensor pos = params["pos"];
  // Per-task weights (nn/functional.h), pos [T, max_len, d_model], take tokens [T, B, L].
  const bool per_task = pos.dim() == 3;
  const int64_t lead = per_task ? 2 : 1;
  MG_CHECK(tokens.dtype() == kInt64 && tokens.dim() == lead + 1, "TransformerClassifier: expected int64 tokens ",
           per_task ? "[T, B, L]" : "[B, L]", ", got ", dtype_name(tokens.dtype()), " ", shape_str(tokens.shape()));
  if (per_task) nn::functional::check_task_dim("TransformerClassifier", tokens, 3, pos);
  const int64_t len = tokens.size(lead);
  MG_CHECK(len >= 1 && len <= options_.max_len, "TransformerClassifier: sequence length ", len,
           " is outside [1, max_len = ", options_.max_len, "]");
  const Tensor is_pad = eq(tokens, scalar(static_cast<double>(options_.pad_id), kInt64, tokens.device()));
  const DType dtype = pos.dtype();
  const Tensor keep = (1.0 - to_dtype(is_pad, dtype)).unsqueeze(-1);  // [..., L, 1]
  const Tensor counts = sum(keep, {lead});                            // [..., 1]
  // Not while a graph is captured, when nothing can be read on the host: such a sequence then
  // pools to NaN.
  MG_CHECK(capturing_graph(tokens.device()) || amin(counts).item() > 0,
           "TransformerClassifier: a sequence consists of padding only");
  Tensor positions = narrow(pos, lead - 1, 0, len);
  if (per_task) positions = positions.unsqueeze(1);  // each task's table, for all of its sequences
  Tensor h = child("embed")->forward(params.sub("embed"), tokens) + positions;
  auto& encoder = static_cast<nn::TransformerEncoder&>(*child("encoder"));
  h = encoder.forward(params.sub("encoder"), h, nn::functional::AttentionMasks{.key_padding_mask = is_pad});
  const Tensor pooled = sum(h * keep, {lead}) / counts;
  return child("head")->forward(params.sub("head"), pooled);
}

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names{"mlp", "conv4", "transformer"};
  return names;
}

std::shared_ptr<nn::Module> make_model(const ModelSpec& spec, Generator* gen) {
  if (spec.name == "mlp") {
    MlpModelOptions o;
    o.out_features = spec.outputs;
    const int64_t width = spec.hidden > 0 ? spec.hidden : 40;
    o.hidden.assign(static_cast<std::size_t>(spec.layers > 0 ? spec.layers : 2), width);
    return std::make_shared<MlpModel>(o, gen);
  }
  if (spec.name == "conv4") {
    Conv4Options o;
    o.in_channels = spec.in_channels;
    o.image_size = spec.image_size;
    o.ways = spec.outputs;
    if (spec.hidden > 0) o.hidden = spec.hidden;
    if (spec.layers > 0) o.blocks = spec.layers;
    o.bn_mode = spec.bn_mode;
    o.bn_steps = spec.bn_steps;
    return std::make_shared<Conv4>(o, gen);
  }
  if (spec.name == "transformer") {
    TransformerClassifierOptions o;
    o.classes = spec.outputs;
    o.max_len = spec.seq_len;
    if (spec.hidden > 0) {
      o.d_model = spec.hidden;
      o.dim_feedforward = 2 * spec.hidden;
    }
    if (spec.layers > 0) o.layers = spec.layers;
    return std::make_shared<TransformerClassifier>(o, gen);
  }
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  MG_FAIL("unknown model '", spec.name, "' (known: ", known, ")");
}

}  // namespace mg::meta
