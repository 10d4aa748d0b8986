// A second-order MAML meta-gradient through a transformer, checked against finite differences.
//
// The model is the shape our users start from: token + positional embeddings -> TransformerDecoder
// (causal self-attention, and causal attention to the embedded sequence as its memory) -> Linear ->
// log-probabilities of the next token. Each task is a tiny "language": sequences that step through
// the vocabulary by a task-specific stride. MAML adapts all parameters with 3 SGD steps on the
// support sequences, recorded on the tape (create_graph), and differentiates the query loss of the
// adapted parameters with respect to the initial ones: d/dθ L_query(θ - α∇L_support(...)).
//
// The check: for a few entries of θ, the meta-gradient must equal the central difference of the
// whole procedure (inner loop included) in float64. First-order MAML, which drops the
// second-order terms, is printed beside it to show that they matter. Exits 1 on a mismatch.
#include <metagrad/metagrad.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace mg;
using namespace mg::nn;

class TinyLM : public Module {
 public:
  TinyLM(int64_t vocab, int64_t max_len, const TransformerLayerOptions& layer, int64_t num_layers, Generator* gen) {
    tok_emb_ = register_module("tok_emb", std::make_shared<Embedding>(vocab, layer.d_model, std::nullopt, gen));
    pos_emb_ = register_module("pos_emb", std::make_shared<Embedding>(max_len, layer.d_model, std::nullopt, gen));
    decoder_ = register_module("decoder", std::make_shared<TransformerDecoder>(layer, num_layers, true, gen));
    head_ = register_module("head", std::make_shared<Linear>(layer.d_model, vocab, true, gen));
  }
  std::string type_name() const override { return "TinyLM"; }
  using Module::forward;

  // tokens [B, L] int64 -> log-probabilities [B, L, vocab]. Every parameter is read through p, so
  // the same code runs with the model's own weights and with MAML's adapted ones.
  Tensor forward(const Params& p, const Tensor& tokens) override {
    const int64_t L = tokens.size(1);
    Tensor x = tok_emb_->forward(p.sub("tok_emb"), tokens) + pos_emb_->forward(p.sub("pos_emb"), arange(double(L)));
    DecoderMasks masks{.tgt = {.is_causal = true}, .memory = {.is_causal = true}};
    Tensor h = decoder_->forward(p.sub("decoder"), x, x, masks);
    return log_softmax(head_->forward(p.sub("head"), h), -1);
  }

 private:
  std::shared_ptr<Embedding> tok_emb_, pos_emb_;
  std::shared_ptr<TransformerDecoder> decoder_;
  std::shared_ptr<Linear> head_;
};

// Mean negative log-likelihood of each next token.
Tensor next_token_loss(TinyLM& model, const Params& p, const Tensor& tokens) {
  const int64_t B = tokens.size(0), L = tokens.size(1);
  Tensor logp = model.forward(p, tokens);
  Tensor predicted = reshape(narrow(logp, 1, 0, L - 1), {B * (L - 1), -1});
  Tensor next = reshape(narrow(tokens, 1, 1, L - 1), {B * (L - 1)});
  return nll_loss(predicted, next);
}

// Sequences start, start + stride, start + 2 stride, ... (mod vocab).
Tensor stride_sequences(const std::vector<int64_t>& starts, int64_t stride, int64_t length, int64_t vocab) {
  std::vector<int64_t> v;
  for (int64_t s : starts)
    for (int64_t t = 0; t < length; ++t) v.push_back((s + t * stride) % vocab);
  return tensor(v, {static_cast<int64_t>(starts.size()), length});
}

constexpr int kInnerSteps = 3;
constexpr double kInnerLr = 0.5;

enum class Mode {
  Exact,       // inner gradients recorded on the tape: the second-order meta-gradient
  FirstOrder,  // inner gradients treated as constants (first-order MAML)
  ValueOnly,   // no tape beyond what each inner gradient needs (for finite differences)
};

// The query loss after kInnerSteps of SGD on the support set, starting from theta.
Tensor maml_query_loss(TinyLM& model, const TensorDict& theta, const Tensor& support, const Tensor& query, Mode mode) {
  TensorDict fast = theta;
  for (int step = 0; step < kInnerSteps; ++step) {
    Tensor loss = next_token_loss(model, Params(fast), support);
    const TensorList grads = grad({loss}, fast.values(), {}, {.create_graph = mode == Mode::Exact});
    TensorDict next;
    std::size_t i = 0;
    for (const auto& [name, w] : fast) {
      const Tensor& g = grads[i++];
      next.insert(name, w - (mode == Mode::Exact ? g : g.detach()) * kInnerLr);
    }
    fast = std::move(next);
  }
  return next_token_loss(model, Params(fast), query);
}

}  // namespace

int main() {
  const int64_t vocab = 7, length = 5;
  Generator gen(2024);
  TinyLM model(vocab, length,
               {.d_model = 8,
                .nhead = 2,
                .dim_feedforward = 16,
                .dropout = 0.0,
                .activation = functional::Activation::GELU,
                .norm_first = true},
               /*num_layers=*/2, &gen);
  model.to(kFloat64);
  std::printf("%s", model.to_string().c_str());

  const int64_t stride = 3;  // the task
  Tensor support = stride_sequences({0, 4}, stride, length, vocab);
  Tensor query = stride_sequences({2, 5}, stride, length, vocab);

  // An ordinary forward and backward pass first.
  Tensor plain = next_token_loss(model, Params(model), support);
  plain.backward();
  std::printf("support loss %.6f, |d loss / d head.bias| = %.6f\n", plain.item(),
              std::sqrt(sum(square(model.child("head")->param("bias").grad())).item()));
  model.zero_grad();

  // The meta-gradient, by double backward through the 3 inner steps.
  const TensorDict theta = model.named_parameters();
  Tensor meta_loss = maml_query_loss(model, theta, support, query, Mode::Exact);
  const TensorList meta_grad = grad({meta_loss}, theta.values());
  Tensor fo_loss = maml_query_loss(model, theta, support, query, Mode::FirstOrder);
  const TensorList fo_grad = grad({fo_loss}, theta.values());
  std::printf("query loss after %d inner steps: %.6f (before adaptation: %.6f)\n", kInnerSteps, meta_loss.item(),
              next_token_loss(model, Params(model), query).item());

  // Finite differences of the whole procedure for a few entries of theta.
  struct Probe {
    std::string name;
    int64_t index;
  };
  const std::vector<Probe> probes = {
      {"tok_emb.weight", 9},
      {"pos_emb.weight", 17},
      {"decoder.layers.0.self_attn.in_proj_weight", 70},
      {"decoder.layers.0.multihead_attn.out_proj.bias", 3},
      {"decoder.layers.1.linear1.weight", 33},
      {"decoder.layers.1.norm2.weight", 5},
      {"decoder.norm.bias", 1},
      {"head.weight", 40},
  };
  const double eps = 1e-5;
  bool ok = true;
  std::printf("\n%-48s %16s %16s %10s %16s\n", "parameter[index]", "MAML (tape)", "finite diff", "rel. err",
              "first-order");
  for (const Probe& probe : probes) {
    const std::vector<std::string> names = theta.keys();
    std::size_t k = 0;
    while (k < names.size() && names[k] != probe.name) ++k;
    if (k == names.size()) {
      std::printf("no parameter %s\n", probe.name.c_str());
      return 1;
    }
    Tensor w = theta.at(probe.name);
    double* entry = w.data_ptr<double>() + probe.index;  // parameters are contiguous leaves
    const double saved = *entry;
    auto loss_at = [&](double value) {
      *entry = value;
      return maml_query_loss(model, theta, support, query, Mode::ValueOnly).item();
    };
    const double numeric = (loss_at(saved + eps) - loss_at(saved - eps)) / (2 * eps);
    *entry = saved;
    const double analytic = meta_grad[k].values_as_double()[static_cast<std::size_t>(probe.index)];
    const double first_order = fo_grad[k].values_as_double()[static_cast<std::size_t>(probe.index)];
    const double rel = std::abs(analytic - numeric) / std::max(std::abs(numeric), 1e-8);
    const bool good = std::abs(analytic - numeric) <= 1e-6 * std::abs(numeric) + 1e-9;
    ok = ok && good;
    std::printf("%-48s %16.10f %16.10f %10.2e %16.10f %s\n",
                (probe.name + "[" + std::to_string(probe.index) + "]").c_str(), analytic, numeric, rel, first_order,
                good ? "" : "MISMATCH");
  }
  std::printf("\n%s\n", ok ? "meta-gradient matches finite differences" : "meta-gradient MISMATCH");
  return ok ? 0 : 1;
}
