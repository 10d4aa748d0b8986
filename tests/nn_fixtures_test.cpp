// Every layer and loss against PyTorch 1.13 (tests/fixtures/gen_layer_fixtures.py): the file's
// state dicts load into the matching modules (strict load_state_dict), and outputs and first
// derivatives (inputs and every parameter) agree.
//
// Tolerance, elementwise: |ours - torch| <= rtol |torch| + atol with
//   float32: rtol 1e-5, atol 1e-6 (the atol only matters for values near zero, where a relative
//            bound means nothing: e.g. a gradient that is a cancelling sum of O(1) terms);
//   float64: rtol 1e-10, atol 1e-12.
//
// PyTorch 1.13 specifics: its MultiheadAttention and transformer layers take no is_causal flag, so
// the fixtures use the -inf upper-triangular float mask (generate_square_subsequent_mask) and
// is_causal = true is checked against the same numbers; its TransformerEncoder/Decoder deep-copy
// one layer (equal initial layers), so the script perturbs every parameter before recording.
// A fully masked attention row is NaN in PyTorch and zero here (see functional::AttentionMasks),
// so no fixture has one (nn_attention_test covers it).
#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <iostream>
#include <memory>
#include <string>

#include "../nn/activation.h"
#include "../nn/attention.h"
#include "../nn/embedding.h"
#include "../nn/flatten.h"
#include "../nn/layer_norm.h"
#include "../nn/linear.h"
#include "../nn/losses.h"
#include "../nn/mlp.h"
#include "../nn/safetensors.h"
#include "../nn/sequential.h"
#include "../nn/transformer.h"
#include "nn_test_util.h"

using namespace mg;
using namespace mg::nn;
using namespace mg::nn::test;
namespace F = mg::nn::functional;

namespace {

struct Tolerance {
  double rtol, atol;
};
Tolerance tolerance(DType dtype) { return dtype == kFloat32 ? Tolerance{1e-5, 1e-6} : Tolerance{1e-10, 1e-12}; }

// The largest error seen, as a fraction of the tolerance allowed (<= 1 passes), and the largest
// relative error over elements of magnitude >= 1e-3, per dtype.
double worst_fraction[2] = {0, 0};
double worst_relative[2] = {0, 0};

void compare(const Tensor& ours, const Tensor& expected, DType dtype, const std::string& what) {
  const Tolerance tol = tolerance(dtype);
  check_close(ours, expected, tol.rtol, tol.atol, what);
  const std::vector<double> a = ours.detach().values_as_double(), b = expected.values_as_double();
  const int d = dtype == kFloat32 ? 0 : 1;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    worst_fraction[d] = std::max(worst_fraction[d], std::abs(a[i] - b[i]) / (tol.atol + tol.rtol * std::abs(b[i])));
    if (std::abs(b[i]) >= 1e-3) worst_relative[d] = std::max(worst_relative[d], std::abs(a[i] - b[i]) / std::abs(b[i]));
  }
}

const TensorDict& fixture(const std::string& file) {
  static std::map<std::string, TensorDict> cache;
  auto it = cache.find(file);
  if (it == cache.end())
    it = cache.emplace(file, load_safetensors(std::string(MG_FIXTURES_DIR) + "/" + file).tensors).first;
  return it->second;
}

using Factory = std::function<std::shared_ptr<Module>()>;
using Run = std::function<TensorDict(Module* module, const TensorDict& inputs)>;

// Loads the case's parameters into a fresh module, runs it on the case's inputs, and compares
// outputs and the gradients of sum_k <out_k, cot_k>.
void check_case(const std::string& file, const std::string& name, const Factory& make, const Run& run) {
  const TensorDict& all = fixture(file);
  for (DType dtype : {kFloat32, kFloat64}) {
    const std::string prefix = std::string(dtype == kFloat32 ? "f32." : "f64.") + name + ".";
    INFO("case ", prefix);
    const TensorDict outs_expected = all.with_prefix_removed(prefix + "out.");
    REQUIRE_MESSAGE(!outs_expected.empty(), "no case ", prefix, " in ", file);
    std::shared_ptr<Module> module = make ? make() : nullptr;
    if (module) {
      module->to(dtype);
      module->load_state_dict(all.with_prefix_removed(prefix + "params."));
    }
    const TensorDict grads_expected = all.with_prefix_removed(prefix + "grad.");
    TensorDict inputs;
    TensorList wrt;
    std::vector<std::string> wrt_names;
    for (const auto& [n, t] : all.with_prefix_removed(prefix + "input.")) {
      Tensor c = t.clone();
      if (grads_expected.contains("input." + n)) {
        c.requires_grad_();
        wrt.push_back(c);
        wrt_names.push_back("input." + n);
      }
      inputs.insert(n, c);
    }
    if (module)
      for (const auto& [n, p] : module->named_parameters()) {
        wrt.push_back(p);
        wrt_names.push_back("params." + n);
      }
    const TensorDict outs = run(module.get(), inputs);
    Tensor scalar;
    for (const auto& [k, expected] : outs_expected) {
      REQUIRE_MESSAGE(outs.contains(k), "output ", k, " missing");
      CHECK(outs.at(k).dtype() == dtype);
      // safetensors_io.py stores a 0-d result as [1] (numpy.ascontiguousarray makes it 1-d).
      const bool scalar_out = outs.at(k).dim() == 0 && expected.shape() == Shape{1};
      compare(outs.at(k), scalar_out ? reshape(expected, {}) : expected, dtype, prefix + "out." + k);
      Tensor term = sum(outs.at(k) * all.at(prefix + "cot." + k));
      scalar = scalar.defined() ? scalar + term : term;
    }
    const TensorList grads = grad({scalar}, wrt, {}, {.allow_unused = true});
    std::size_t compared = 0;
    for (std::size_t i = 0; i < wrt.size(); ++i) {
      Tensor expected = grads_expected.get(wrt_names[i]);
      if (!expected.defined()) continue;  // PyTorch had no gradient: checked below via the count
      REQUIRE_MESSAGE(grads[i].defined(), "no gradient for ", wrt_names[i]);
      compare(grads[i], expected, dtype, prefix + "grad." + wrt_names[i]);
      ++compared;
    }
    CHECK(compared == grads_expected.size());
  }
}

template <typename M, typename... Args>
Factory make(Args... args) {
  return [=]() -> std::shared_ptr<Module> { return std::make_shared<M>(args...); };
}

TensorDict output(const Tensor& t) { return TensorDict{{"output", t}}; }

F::AttentionMasks masks_of(const TensorDict& in) {
  return {.attn_mask = in.get("attn_mask"), .key_padding_mask = in.get("key_padding_mask")};
}

}  // namespace

TEST_CASE("PyTorch fixtures: Linear, Embedding, LayerNorm, Sequential/MLP, Flatten") {
  const std::string file = "layers_basic.safetensors";
  auto single = [](const char* input) {
    return [input](Module* m, const TensorDict& in) { return output(m->forward(in.at(input))); };
  };
  check_case(file, "linear", make<Linear>(3, 4), single("x"));
  check_case(file, "linear_nobias", make<Linear>(3, 2, false), single("x"));
  check_case(file, "embedding", make<Embedding>(6, 3, 1), single("indices"));
  check_case(file, "layer_norm", make<LayerNorm>(Shape{2, 3}), single("x"));
  check_case(file, "layer_norm_plain", make<LayerNorm>(5, 1e-3, false), single("x"));
  check_case(
      file, "mlp_tanh",
      [] {
        return make_mlp({.sizes = {3, 5, 4, 2}, .activation = F::Activation::Tanh});
      },
      single("x"));
  check_case(
      file, "mlp_gelu",
      [] {
        return make_mlp({.sizes = {3, 5, 2}, .activation = F::Activation::GELU});
      },
      single("x"));
  check_case(
      file, "flatten_linear",
      [] {
        return std::make_shared<Sequential>(
            std::vector<std::shared_ptr<Module>>{std::make_shared<Flatten>(), std::make_shared<Linear>(6, 2)});
      },
      single("x"));
}

TEST_CASE("PyTorch fixtures: MultiheadAttention with each mask kind") {
  const std::string file = "layers_attention.safetensors";
  Factory mha = make<MultiheadAttention>(4, 2, 0.0, true);
  auto self = [](Module* m, const TensorDict& in) {
    const Tensor& x = in.at("x");
    auto out = static_cast<MultiheadAttention*>(m)->forward(x, x, x, masks_of(in), true);
    return TensorDict{{"output", out.output}, {"weights", out.weights}};
  };
  for (const char* name : {"mha_self", "mha_key_padding", "mha_attn_mask_bool", "mha_attn_mask_float", "mha_causal",
                           "mha_causal_key_padding"}) {
    CAPTURE(name);
    check_case(file, name, mha, self);
  }
  // is_causal gives what PyTorch computes with its -inf upper-triangular float mask.
  auto causal = [](Module* m, const TensorDict& in) {
    const Tensor& x = in.at("x");
    auto out = static_cast<MultiheadAttention*>(m)->forward(
        x, x, x, {.key_padding_mask = in.get("key_padding_mask"), .is_causal = true}, true);
    return TensorDict{{"output", out.output}, {"weights", out.weights}};
  };
  check_case(file, "mha_causal", mha, causal);
  check_case(file, "mha_causal_key_padding", mha, causal);
  auto cross = [](Module* m, const TensorDict& in) {
    auto out = static_cast<MultiheadAttention*>(m)->forward(in.at("query"), in.at("key"), in.at("value"), masks_of(in),
                                                            true, false);
    return TensorDict{{"output", out.output}, {"weights", out.weights}};
  };
  check_case(file, "mha_cross", mha, cross);
  check_case(file, "mha_cross_3d_mask", mha, cross);
  check_case(file, "mha_nobias", make<MultiheadAttention>(4, 2, 0.0, false),
             [](Module* m, const TensorDict& in) { return output(m->forward(in.at("x"))); });
}

TEST_CASE("PyTorch fixtures: transformer encoder and decoder layers and stacks") {
  const std::string file = "layers_transformer.safetensors";
  for (bool norm_first : {false, true})
    for (F::Activation act : {F::Activation::ReLU, F::Activation::GELU}) {
      const std::string tag =
          std::string(norm_first ? "pre_" : "post_") + (act == F::Activation::ReLU ? "relu" : "gelu");
      CAPTURE(tag);
      const TransformerLayerOptions opts{
          .d_model = 4, .nhead = 2, .dim_feedforward = 6, .dropout = 0.0, .activation = act, .norm_first = norm_first};
      check_case(file, "encoder_" + tag, make<TransformerEncoderLayer>(opts, nullptr),
                 [](Module* m, const TensorDict& in) {
                   return output(static_cast<TransformerEncoderLayer*>(m)->forward(in.at("src"), masks_of(in)));
                 });
      check_case(file, "encoder_" + tag, make<TransformerEncoderLayer>(opts, nullptr),
                 [](Module* m, const TensorDict& in) {
                   return output(static_cast<TransformerEncoderLayer*>(m)->forward(
                       in.at("src"), {.key_padding_mask = in.at("key_padding_mask"), .is_causal = true}));
                 });
      check_case(
          file, "decoder_" + tag, make<TransformerDecoderLayer>(opts, nullptr), [](Module* m, const TensorDict& in) {
            DecoderMasks masks{.tgt = {.attn_mask = in.at("tgt_mask"), .key_padding_mask = in.at("key_padding_mask")},
                               .memory = {.key_padding_mask = in.at("memory_key_padding_mask")}};
            return output(static_cast<TransformerDecoderLayer*>(m)->forward(in.at("tgt"), in.at("memory"), masks));
          });
    }
  check_case(
      file, "encoder_stack",
      make<TransformerEncoder>(TransformerLayerOptions{.d_model = 4, .nhead = 2, .dim_feedforward = 6, .dropout = 0.0},
                               int64_t{2}, true, nullptr),
      [](Module* m, const TensorDict& in) {
        return output(static_cast<TransformerEncoder*>(m)->forward(in.at("src"), {.attn_mask = in.at("attn_mask")}));
      });
  check_case(file, "decoder_stack",
             make<TransformerDecoder>(TransformerLayerOptions{.d_model = 4,
                                                              .nhead = 2,
                                                              .dim_feedforward = 6,
                                                              .dropout = 0.0,
                                                              .activation = F::Activation::GELU,
                                                              .norm_first = true},
                                      int64_t{2}, true, nullptr),
             [](Module* m, const TensorDict& in) {
               return output(static_cast<TransformerDecoder*>(m)->forward(in.at("tgt"), in.at("memory"),
                                                                          {.tgt = {.is_causal = true}}));
             });
}

TEST_CASE("PyTorch fixtures: losses") {
  const std::string file = "layers_losses.safetensors";
  auto reduction = [](const std::string& name) {
    if (name.ends_with("_sum")) return Reduction::Sum;
    if (name.ends_with("_none")) return Reduction::None;
    return Reduction::Mean;
  };
  for (const char* red : {"mean", "sum", "none"}) {
    const std::string r = red;
    const Reduction rd = reduction("_" + r);
    check_case(file, "mse_" + r, nullptr,
               [rd](Module*, const TensorDict& in) { return output(mse_loss(in.at("x"), in.at("target"), rd)); });
    check_case(file, "ce_" + r, nullptr, [rd](Module*, const TensorDict& in) {
      return output(cross_entropy(in.at("x"), in.at("target"), {.reduction = rd}));
    });
    check_case(file, "ce_smooth_" + r, nullptr, [rd](Module*, const TensorDict& in) {
      return output(cross_entropy(in.at("x"), in.at("target"),
                                  {.weight = in.at("weight_"), .reduction = rd, .label_smoothing = 0.1}));
    });
    check_case(file, "nll_" + r, nullptr, [rd](Module*, const TensorDict& in) {
      return output(nll_loss(in.at("x"), in.at("target"), {.weight = in.at("weight_"), .reduction = rd}));
    });
  }
  check_case(file, "ce_smooth_plain", nullptr, [](Module*, const TensorDict& in) {
    return output(cross_entropy(in.at("x"), in.at("target"), {.label_smoothing = 0.25}));
  });
  check_case(file, "ce_probs", nullptr, [](Module*, const TensorDict& in) {
    return output(cross_entropy(in.at("x"), in.at("target"), {.label_smoothing = 0.05}));
  });
  check_case(file, "ce_probs_weight_sum", nullptr, [](Module*, const TensorDict& in) {
    return output(
        cross_entropy(in.at("x"), in.at("target"), {.weight = in.at("weight_"), .reduction = Reduction::Sum}));
  });
  check_case(file, "ce_spatial", nullptr,
             [](Module*, const TensorDict& in) { return output(cross_entropy(in.at("x"), in.at("target"))); });
  check_case(file, "bce_mean", nullptr, [](Module*, const TensorDict& in) {
    return output(binary_cross_entropy_with_logits(in.at("x"), in.at("target")));
  });
  check_case(file, "bce_weights_none", nullptr, [](Module*, const TensorDict& in) {
    return output(binary_cross_entropy_with_logits(
        in.at("x"), in.at("target"),
        {.weight = in.at("weight_"), .pos_weight = in.at("pos_weight"), .reduction = Reduction::None}));
  });
  check_case(file, "bce_pos_weight_sum", nullptr, [](Module*, const TensorDict& in) {
    return output(binary_cross_entropy_with_logits(in.at("x"), in.at("target"),
                                                   {.pos_weight = in.at("pos_weight"), .reduction = Reduction::Sum}));
  });
}

TEST_CASE("PyTorch fixtures: the worst error as a fraction of the tolerance") {
  // Runs last (doctest orders by file and line): a summary for the record.
  MESSAGE("float32: worst |diff| / (1e-5 |torch| + 1e-6) = ", worst_fraction[0],
          "; worst relative error where |torch| >= 1e-3: ", worst_relative[0]);
  MESSAGE("float64: worst |diff| / (1e-10 |torch| + 1e-12) = ", worst_fraction[1],
          "; worst relative error where |torch| >= 1e-3: ", worst_relative[1]);
  CHECK(worst_fraction[0] <= 1.0);
  CHECK(worst_fraction[1] <= 1.0);
}
