// MultiheadAttention (masks of every kind, causal, fully masked rows) and the transformer layers
// and stacks: structure and names, values against a hand-written reference, fast weights, and
// first and second derivatives (float64, tiny sizes).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "../nn/attention.h"
#include "../nn/functional.h"
#include "../nn/init.h"
#include "../nn/transformer.h"
#include "nn_test_util.h"

using namespace mg;
using namespace mg::nn;
using namespace mg::nn::test;
namespace F = mg::nn::functional;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Attention by the textbook, per head, with -inf masking: the reference for rows that are not
// fully masked.
Tensor reference_mha(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const TensorDict& p, int64_t heads,
                     const Tensor& additive /* broadcastable to [B, H, L, S] or undefined */) {
  const int64_t B = q_in.size(0), L = q_in.size(1), E = q_in.size(2), S = k_in.size(1), D = E / heads;
  Tensor W = p.at("in_proj_weight"), b = p.at("in_proj_bias");
  auto proj = [&](const Tensor& x, int64_t i) {
    return matmul(x, narrow(W, 0, i * E, E).t()) + narrow(b, 0, i * E, E);
  };
  Tensor q = proj(q_in, 0), k = proj(k_in, 1), v = proj(v_in, 2);
  std::vector<Tensor> outs;
  for (int64_t h = 0; h < heads; ++h) {
    Tensor qh = narrow(q, -1, h * D, D), kh = narrow(k, -1, h * D, D), vh = narrow(v, -1, h * D, D);
    Tensor s = matmul(qh, transpose(kh, 1, 2)) / std::sqrt(static_cast<double>(D));  // [B, L, S]
    if (additive.defined()) s = s + select(expand(additive, {B, heads, L, S}), 1, h);
    outs.push_back(matmul(softmax(s, -1), vh));
  }
  return matmul(concat(outs, -1), p.at("out_proj.weight").t()) + p.at("out_proj.bias");
}

std::shared_ptr<MultiheadAttention> small_mha(uint64_t seed, int64_t E = 4, int64_t H = 2) {
  Generator gen(seed);
  auto mha = std::make_shared<MultiheadAttention>(E, H, 0.0, true, &gen);
  mha->to(kFloat64);
  // Nonzero biases, so that their gradients are exercised.
  init::normal_(mha->param("in_proj_bias"), 0.0, 0.5, &gen);
  init::normal_(mha->child("out_proj")->param("bias"), 0.0, 0.5, &gen);
  return mha;
}

Tensor I64(const std::vector<int64_t>& v, const Shape& s) { return tensor(v, s); }

}  // namespace

TEST_CASE("MultiheadAttention: PyTorch's parameter names, shapes and init") {
  Generator gen(1);
  MultiheadAttention mha(8, 2, 0.0, true, &gen);
  CHECK(mha.named_parameters().keys() ==
        std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"});
  CHECK(mha.param("in_proj_weight").shape() == Shape{24, 8});
  CHECK(max_abs(mha.param("in_proj_bias")) == 0.0);
  CHECK(max_abs(mha.child("out_proj")->param("bias")) == 0.0);
  CHECK(max_abs(mha.param("in_proj_weight")) <= std::sqrt(6.0 / 32.0));
  CHECK(max_abs(mha.child("out_proj")->param("weight")) <= 1.0 / std::sqrt(8.0));
  CHECK(MultiheadAttention(8, 2, 0.0, false).named_parameters().keys() ==
        std::vector<std::string>{"in_proj_weight", "out_proj.weight"});
  CHECK_THROWS_AS(MultiheadAttention(6, 4), Error);
}

TEST_CASE("MultiheadAttention: values against the per-head textbook formula, for each mask kind") {
  auto mha = small_mha(2);
  const TensorDict p = mha->named_parameters();
  Tensor x = randn64({2, 3, 4}, 3), mem = randn64({2, 4, 4}, 4), val = randn64({2, 4, 4}, 5);
  const double tol = 1e-12;

  // Self-attention, cross-attention with key == value, and with all three different.
  check_close(mha->forward(x), reference_mha(x, x, x, p, 2, Tensor()), tol, tol, "self");
  check_close(mha->forward(x, mem, mem).output, reference_mha(x, mem, mem, p, 2, Tensor()), tol, tol, "cross kv");
  check_close(mha->forward(x, mem, val).output, reference_mha(x, mem, val, p, 2, Tensor()), tol, tol, "cross");

  // key_padding_mask [B, S] (nonzero = ignore) == additive -inf on those keys.
  Tensor kpm = I64({0, 0, 1, 1, 0, 1, 0, 0}, {2, 4});
  Tensor kpm_add = reshape(where(kpm, full({}, -kInf, kFloat64), zeros({}, kFloat64)), {2, 1, 1, 4});
  Tensor expected = reference_mha(x, mem, mem, p, 2, kpm_add);
  check_close(mha->forward(x, mem, mem, {.key_padding_mask = kpm}).output, expected, tol, tol, "kpm bool");
  Tensor kpm_float = where(kpm, full({}, -kInf, kFloat64), zeros({}, kFloat64));
  check_close(mha->forward(x, mem, mem, {.key_padding_mask = kpm_float}).output, expected, tol, tol, "kpm -inf");

  // attn_mask [L, S]: boolean, additive finite, additive with -inf, and per-head [B*H, L, S].
  Tensor am = I64({0, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0}, {3, 4});
  Tensor am_add = where(am, full({}, -kInf, kFloat64), zeros({}, kFloat64));
  check_close(mha->forward(x, mem, mem, {.attn_mask = am}).output, reference_mha(x, mem, mem, p, 2, am_add), tol, tol,
              "attn bool");
  check_close(mha->forward(x, mem, mem, {.attn_mask = am_add}).output, reference_mha(x, mem, mem, p, 2, am_add), tol,
              tol, "attn -inf");
  Tensor bias = randn64({3, 4}, 6);
  check_close(mha->forward(x, mem, mem, {.attn_mask = bias}).output, reference_mha(x, mem, mem, p, 2, bias), tol, tol,
              "attn additive");
  Tensor per_head = randn64({4, 3, 4}, 7);
  check_close(mha->forward(x, mem, mem, {.attn_mask = per_head}).output,
              reference_mha(x, mem, mem, p, 2, reshape(per_head, {2, 2, 3, 4})), tol, tol, "attn 3-D");
  // A float32 mask on a float64 model is converted.
  check_close(mha->forward(x, mem, mem, {.attn_mask = to_dtype(bias, kFloat32)}).output,
              reference_mha(x, mem, mem, p, 2, to_dtype(to_dtype(bias, kFloat32), kFloat64)), tol, tol, "f32 mask");

  // Combined: attn_mask + key padding + causal.
  Tensor causal_add = where(gt(reshape(arange(4.0), {1, 4}), reshape(arange(3.0), {3, 1})), full({}, -kInf, kFloat64),
                            zeros({}, kFloat64));
  check_close(mha->forward(x, mem, mem, {.is_causal = true}).output, reference_mha(x, mem, mem, p, 2, causal_add), tol,
              tol, "causal");
  Tensor all = bias + causal_add + kpm_add;
  check_close(mha->forward(x, mem, mem, {.attn_mask = bias, .key_padding_mask = kpm, .is_causal = true}).output,
              reference_mha(x, mem, mem, p, 2, all), tol, tol, "all masks");

  CHECK_THROWS_AS(mha->forward(x, mem, mem, {.attn_mask = zeros({4, 3}, kInt64)}), Error);
  CHECK_THROWS_AS(mha->forward(x, mem, mem, {.key_padding_mask = zeros({2, 3}, kInt64)}), Error);
  CHECK_THROWS_AS(mha->forward(x, mem, x), Error);
  CHECK_THROWS_AS(mha->forward(zeros({3, 4}, kFloat64)), Error);
}

TEST_CASE("MultiheadAttention: attention weights; masked keys get exactly zero") {
  auto mha = small_mha(8);
  Tensor x = randn64({2, 3, 4}, 9);
  Tensor kpm = I64({0, 0, 1, 1, 0, 0}, {2, 3});
  auto out = mha->forward(x, x, x, {.key_padding_mask = kpm, .is_causal = true}, true);
  REQUIRE(out.weights.shape() == Shape{2, 3, 3});
  std::vector<double> w = out.weights.values_as_double();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 3; ++i) {
      double row = 0;
      for (int64_t j = 0; j < 3; ++j) {
        const double e = w[static_cast<std::size_t>((b * 3 + i) * 3 + j)];
        row += e;
        if (j > i || (b == 0 && j == 2) || (b == 1 && j == 0)) CHECK(e == 0.0);
      }
      if (!(b == 1 && i == 0)) CHECK(row == doctest::Approx(1.0).epsilon(1e-12));
    }
  auto per_head = mha->forward(x, x, x, {}, true, false);
  CHECK(per_head.weights.shape() == Shape{2, 2, 3, 3});
  check_close(mean(per_head.weights, {1}), mha->forward(x, x, x, {}, true).weights, 1e-14, 1e-14, "average");
  CHECK_FALSE(mha->forward(x, x, x).weights.defined());
}

TEST_CASE("MultiheadAttention: a fully masked row gives zeros, never NaN, in forward and backward") {
  auto mha = small_mha(10);
  Tensor x = randn64({2, 3, 4}, 11).requires_grad_();
  // Batch 1's query 0 may not see any key: causal leaves it key 0, the padding mask removes that.
  Tensor kpm = I64({0, 0, 0, 1, 0, 0}, {2, 3});
  auto out = mha->forward(x, x, x, {.key_padding_mask = kpm, .is_causal = true}, true);
  for (double v : out.output.values_as_double()) REQUIRE(std::isfinite(v));
  // The dead row's attention output is zero, so the layer outputs out_proj's bias there.
  check_close(select(select(out.output, 0, 1), 0, 0), mha->child("out_proj")->param("bias"), 0, 1e-15, "dead row");
  CHECK(max_abs(select(select(out.weights, 0, 1), 0, 0)) == 0.0);
  // Gradients (and gradients of gradients) stay finite.
  TensorList ws = mha->parameters();
  ws.push_back(x);
  Tensor loss = sum(square(out.output));
  TensorList g = grad({loss}, ws, {}, {.create_graph = true});
  Tensor gnorm = zeros({}, kFloat64);
  for (const Tensor& t : g) {
    for (double v : t.values_as_double()) REQUIRE(std::isfinite(v));
    gnorm = gnorm + sum(square(t));
  }
  for (const Tensor& t : grad({gnorm}, ws))
    for (double v : t.values_as_double()) REQUIRE(std::isfinite(v));
  // Same with an all -inf additive row.
  Tensor am = I64({1, 1, 1, 0, 0, 0, 0, 1, 0}, {3, 3});
  Tensor am_inf = where(am, full({}, -kInf, kFloat64), zeros({}, kFloat64));
  for (double v : mha->forward(x, x, x, {.attn_mask = am_inf}).output.values_as_double()) REQUIRE(std::isfinite(v));
  check_module_grads(
      *mha, {x},
      [&](const Params& p, const TensorList& in) {
        return mha->forward(p, in[0], in[0], in[0], {.key_padding_mask = kpm, .is_causal = true}).output;
      },
      Coverage::Vectors);
}

TEST_CASE("MultiheadAttention: gradcheck and gradgradcheck with each mask kind") {
  auto mha = small_mha(12);
  Tensor x = randn64({2, 3, 4}, 13).requires_grad_();
  Tensor mem = randn64({2, 2, 4}, 14).requires_grad_();
  auto self = [&](F::AttentionMasks masks) {
    return [&, masks](const Params& p, const TensorList& in) {
      return mha->forward(p, in[0], in[0], in[0], masks).output;
    };
  };
  // Every parameter without masks; with masks, the input and the biases (the masks act on the
  // scores, which every parameter reaches only through the input projections).
  SUBCASE("no mask") { check_module_grads(*mha, {x}, self({})); }
  SUBCASE("key_padding_mask") {
    check_module_grads(*mha, {x}, self({.key_padding_mask = I64({0, 0, 1, 0, 1, 0}, {2, 3})}), Coverage::Vectors);
  }
  SUBCASE("boolean attn_mask") {
    check_module_grads(*mha, {x}, self({.attn_mask = I64({0, 1, 0, 0, 0, 1, 1, 0, 0}, {3, 3})}), Coverage::Vectors);
  }
  SUBCASE("additive attn_mask, differentiated too") {
    Tensor bias = randn64({3, 3}, 15).requires_grad_();
    check_module_grads(
        *mha, {x, bias},
        [&](const Params& p, const TensorList& in) {
          return mha->forward(p, in[0], in[0], in[0], {.attn_mask = in[1]}).output;
        },
        Coverage::Vectors);
  }
  SUBCASE("causal") { check_module_grads(*mha, {x}, self({.is_causal = true}), Coverage::Vectors); }
  SUBCASE("cross-attention with key padding, and the weights") {
    check_module_grads(
        *mha, {x, mem},
        [&](const Params& p, const TensorList& in) {
          auto out = mha->forward(p, in[0], in[1], in[1], {.key_padding_mask = I64({0, 1, 0, 0}, {2, 2})}, true);
          return concat({reshape(out.output, {-1}), reshape(out.weights, {-1})});
        },
        Coverage::Vectors);
  }
}

TEST_CASE("MultiheadAttention: fast weights and attention dropout") {
  auto mha = small_mha(16);
  Tensor x = randn64({2, 3, 4}, 17);
  check_fast_weights(*mha, [&](const Params& p) { return mha->forward(p, x, x, x, {.is_causal = true}).output; });

  Generator g1(5), g2(5);
  MultiheadAttention a(4, 2, 0.5, true, &g1), b(4, 2, 0.5, true, &g2);
  Tensor x32 = to_dtype(x, kFloat32);
  auto wa = a.forward(x32, x32, x32, {}, true).weights;
  CHECK(wa.values_as_double() == b.forward(x32, x32, x32, {}, true).weights.values_as_double());
  a.eval();
  CHECK(a.forward(x32).values_as_double() == a.forward(x32).values_as_double());
}

TEST_CASE("scaled_dot_product_attention") {
  Tensor q = randn64({2, 3, 4}, 18), k = randn64({2, 5, 4}, 19), v = randn64({2, 5, 2}, 20);
  Tensor scores = matmul(q, transpose(k, -2, -1)) / 2.0;
  check_close(F::scaled_dot_product_attention(q, k, v), matmul(softmax(scores, -1), v), 1e-13, 1e-13, "plain");
  Tensor m = I64({0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1}, {3, 5});
  Tensor add = where(m, full({}, -kInf, kFloat64), zeros({}, kFloat64));
  Tensor w;
  check_close(F::scaled_dot_product_attention(q, k, v, m, false, 0.0, false, nullptr, &w),
              matmul(softmax(scores + add, -1), v), 1e-13, 1e-13, "masked");
  CHECK(w.shape() == Shape{2, 3, 5});
  Tensor causal = where(gt(reshape(arange(5.0), {1, 5}), reshape(arange(3.0), {3, 1})), full({}, -kInf, kFloat64),
                        zeros({}, kFloat64));
  check_close(F::scaled_dot_product_attention(q, k, v, Tensor(), true), matmul(softmax(scores + causal, -1), v), 1e-13,
              1e-13, "causal");
  CHECK_THROWS_AS(F::scaled_dot_product_attention(q, v, v), Error);
}

namespace {

TransformerLayerOptions tiny(bool norm_first, F::Activation act) {
  return {.d_model = 4, .nhead = 2, .dim_feedforward = 6, .dropout = 0.0, .activation = act, .norm_first = norm_first};
}

// Random norms and biases, so that no gradient is trivially zero.
void perturb(Module& m, uint64_t seed) {
  Generator gen(seed);
  for (const auto& [name, t] : m.named_parameters())
    if (t.dim() == 1)
      init::normal_(t, name.find("norm") != std::string::npos && name.ends_with("weight") ? 1.0 : 0.0, 0.3, &gen);
}

}  // namespace

TEST_CASE("TransformerEncoderLayer / DecoderLayer: PyTorch's names in PyTorch's order") {
  Generator gen(21);
  TransformerEncoderLayer enc(tiny(false, F::Activation::ReLU), &gen);
  CHECK(enc.named_parameters().keys() ==
        std::vector<std::string>{"self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                                 "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
                                 "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"});
  TransformerDecoderLayer dec(tiny(true, F::Activation::GELU), &gen);
  CHECK(dec.named_parameters().size() == 4 + 4 + 4 + 6);
  CHECK(dec.named_parameters().keys()[4] == "multihead_attn.in_proj_weight");
  CHECK(dec.named_parameters().keys().back() == "norm3.bias");
  TransformerEncoder stack(tiny(false, F::Activation::ReLU), 2, true, &gen);
  CHECK(stack.named_parameters().keys().front() == "layers.0.self_attn.in_proj_weight");
  CHECK(stack.named_parameters().keys()[12] == "layers.1.self_attn.in_proj_weight");
  CHECK(stack.named_parameters().keys().back() == "norm.bias");
  // Layers are initialised independently.
  CHECK(stack.layers()[0]->child("linear1")->param("weight").values_as_double() !=
        stack.layers()[1]->child("linear1")->param("weight").values_as_double());
  TransformerDecoder dstack(tiny(false, F::Activation::ReLU), 3, false, &gen);
  CHECK(dstack.named_parameters().size() == 3 * 18);
  CHECK_THROWS_AS(TransformerEncoderLayer({.d_model = 5, .nhead = 2}), Error);
}

TEST_CASE("TransformerEncoderLayer: post-norm and pre-norm against the formula") {
  for (bool norm_first : {false, true}) {
    CAPTURE(norm_first);
    Generator gen(22);
    TransformerEncoderLayer layer(tiny(norm_first, F::Activation::GELU), &gen);
    layer.to(kFloat64);
    perturb(layer, 23);
    Tensor x = randn64({2, 3, 4}, 24);
    Tensor kpm = I64({0, 0, 1, 0, 0, 0}, {2, 3});
    F::AttentionMasks masks{.key_padding_mask = kpm, .is_causal = true};
    auto sa = [&](const Tensor& h) {
      return std::dynamic_pointer_cast<MultiheadAttention>(layer.child("self_attn"))->forward(h, h, h, masks).output;
    };
    auto ff = [&](const Tensor& h) {
      return layer.child("linear2")->forward(gelu(layer.child("linear1")->forward(h)));
    };
    auto n1 = [&](const Tensor& h) { return layer.child("norm1")->forward(h); };
    auto n2 = [&](const Tensor& h) { return layer.child("norm2")->forward(h); };
    Tensor expected;
    if (norm_first) {
      Tensor h = x + sa(n1(x));
      expected = h + ff(n2(h));
    } else {
      Tensor h = n1(x + sa(x));
      expected = n2(h + ff(h));
    }
    check_close(layer.forward(x, masks), expected, 1e-13, 1e-13, "encoder layer");
  }
}

TEST_CASE("TransformerEncoderLayer: gradcheck and gradgradcheck, post- and pre-norm") {
  Tensor x = randn64({1, 3, 4}, 25).requires_grad_();
  for (auto [norm_first, act] : {std::pair{false, F::Activation::ReLU}, std::pair{true, F::Activation::GELU}}) {
    CAPTURE(norm_first);
    Generator gen(26);
    TransformerEncoderLayer layer(tiny(norm_first, act), &gen);
    layer.to(kFloat64);
    perturb(layer, 27);
    F::AttentionMasks masks{.key_padding_mask = I64({0, 1, 0}, {1, 3}), .is_causal = !norm_first};
    check_module_grads(
        layer, {x}, [&](const Params& p, const TensorList& in) { return layer.forward(p, in[0], masks); },
        Coverage::Vectors);
    check_fast_weights(layer, [&](const Params& p) { return layer.forward(p, x, masks); });
  }
}

TEST_CASE("TransformerDecoderLayer: gradcheck and gradgradcheck, post- and pre-norm, with masks") {
  Tensor tgt = randn64({1, 3, 4}, 28).requires_grad_();
  Tensor memory = randn64({1, 2, 4}, 29).requires_grad_();
  for (auto [norm_first, act] : {std::pair{false, F::Activation::GELU}, std::pair{true, F::Activation::ReLU}}) {
    CAPTURE(norm_first);
    Generator gen(30);
    TransformerDecoderLayer layer(tiny(norm_first, act), &gen);
    layer.to(kFloat64);
    perturb(layer, 31);
    DecoderMasks masks{.tgt = {.is_causal = true}, .memory = {.key_padding_mask = I64({0, 1}, {1, 2})}};
    check_module_grads(
        layer, {tgt, memory},
        [&](const Params& p, const TensorList& in) { return layer.forward(p, in[0], in[1], masks); },
        Coverage::Vectors);
    check_fast_weights(layer, [&](const Params& p) { return layer.forward(p, tgt, memory, masks); });
  }
}

TEST_CASE("TransformerEncoder / TransformerDecoder stacks: layer by layer, then the final norm") {
  Generator gen(32);
  TransformerEncoder enc(tiny(true, F::Activation::ReLU), 2, true, &gen);
  TransformerDecoder dec(tiny(false, F::Activation::GELU), 2, true, &gen);
  enc.to(kFloat64);
  dec.to(kFloat64);
  perturb(enc, 33);
  perturb(dec, 34);
  Tensor x = randn64({2, 3, 4}, 35), mem = randn64({2, 2, 4}, 36);
  F::AttentionMasks causal{.is_causal = true};
  Tensor h = x;
  for (const auto& layer : enc.layers()) h = layer->forward(h, causal);
  check_close(enc.forward(x, causal), enc.child("norm")->forward(h), 1e-14, 1e-14, "encoder stack");
  DecoderMasks dm{.tgt = causal};
  h = x;
  for (const auto& layer : dec.layers()) h = layer->forward(h, mem, dm);
  check_close(dec.forward(x, mem, dm), dec.child("norm")->forward(h), 1e-14, 1e-14, "decoder stack");
  // The single-input forward of the encoder means "no masks".
  check_close(enc.forward(x), enc.forward(x, F::AttentionMasks{}), 0, 0, "encoder single input");

  // A small stack through gradgradcheck too (one batch, short sequences).
  TransformerDecoder small(tiny(true, F::Activation::GELU), 2, true, &gen);
  small.to(kFloat64);
  Tensor t = randn64({1, 2, 4}, 37).requires_grad_(), m = randn64({1, 2, 4}, 38);
  check_module_grads(
      small, {t}, [&](const Params& p, const TensorList& in) { return small.forward(p, in[0], m, dm); },
      Coverage::Inputs);
  check_fast_weights(small, [&](const Params& p) { return small.forward(p, t, m, dm); });
}
