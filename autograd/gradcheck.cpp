#include "gradcheck.h"

#include <cmath>
#include <sstream>

#include "../tensor/kernels.h"
#include "grad.h"
#include "grad_mode.h"
#include "ops.h"

namespace mg {
namespace {

// Address of the element with row-major index flat, honouring strides and offset.
double* element_address(const Tensor& t, int64_t flat) {
  int64_t offset = 0;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    const int64_t size = t.size(d);
    offset += (flat % size) * t.stride(d);
    flat /= size;
  }
  return t.data_ptr<double>() + offset;
}

std::vector<double> evaluate(const TensorFunction& f, const TensorList& inputs) {
  Tensor out = f(inputs);
  return out.detach().values_as_double();
}

std::vector<std::size_t> checked_inputs(const char* api, const TensorList& inputs) {
  std::vector<std::size_t> checked;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined() || !inputs[i].requires_grad()) continue;
    MG_CHECK(inputs[i].dtype() == kFloat64, api, ": input ", i, " is ", describe(inputs[i]),
             "; checks need float64 inputs");
    for (int64_t d = 0; d < inputs[i].dim(); ++d)
      MG_CHECK(inputs[i].stride(d) != 0 || inputs[i].size(d) <= 1, api, ": input ", i,
               " is an expanded view; pass a tensor whose elements each have their own storage");
    checked.push_back(i);
  }
  MG_CHECK(!checked.empty(), api, ": no input requires grad, nothing to check");
  return checked;
}

}  // namespace

GradcheckResult gradcheck(const TensorFunction& f, const TensorList& inputs, GradcheckOptions options) {
  const std::vector<std::size_t> checked = checked_inputs("gradcheck", inputs);
  Tensor out = f(inputs);
  MG_CHECK(out.defined() && out.dtype() == kFloat64, "gradcheck: f must return a float64 tensor, got ",
           out.defined() ? describe(out) : std::string("undefined"));
  const int64_t n_out = out.numel();

  // Analytic Jacobian, one reverse pass per output element.
  std::vector<std::vector<std::vector<double>>> analytic(checked.size());  // [input][out][elem]
  for (std::size_t c = 0; c < checked.size(); ++c) analytic[c].resize(n_out);
  TensorList wrt;
  for (std::size_t i : checked) wrt.push_back(inputs[i]);
  for (int64_t k = 0; k < n_out; ++k) {
    std::vector<double> onehot(n_out, 0.0);
    onehot[k] = 1.0;
    TensorList grads;
    if (out.requires_grad())
      grads = grad({out}, wrt, {tensor(onehot, out.shape(), kFloat64, out.device())},
                   {.create_graph = false, .retain_graph = true, .allow_unused = true});
    for (std::size_t c = 0; c < checked.size(); ++c) {
      const int64_t n_in = inputs[checked[c]].numel();
      if (c < grads.size() && grads[c].defined()) {
        MG_CHECK(grads[c].shape() == inputs[checked[c]].shape(), "gradcheck: gradient for input ", checked[c],
                 " has shape ", shape_str(grads[c].shape()), ", input has ", shape_str(inputs[checked[c]].shape()));
        analytic[c][k] = grads[c].values_as_double();
      } else {
        analytic[c][k].assign(n_in, 0.0);
      }
    }
  }

  // Numeric Jacobian by central differences, perturbing storage in place.
  GradcheckResult result;
  for (std::size_t c = 0; c < checked.size(); ++c) {
    const Tensor& x = inputs[checked[c]];
    for (int64_t j = 0; j < x.numel(); ++j) {
      double* p = element_address(x, j);
      const double saved = *p;
      *p = saved + options.eps;
      std::vector<double> plus = evaluate(f, inputs);
      *p = saved - options.eps;
      std::vector<double> minus = evaluate(f, inputs);
      *p = saved;
      for (int64_t k = 0; k < n_out; ++k) {
        const double numeric = (plus[k] - minus[k]) / (2.0 * options.eps);
        const double a = analytic[c][k][j];
        const double err = std::abs(a - numeric);
        result.max_abs_error = std::max(result.max_abs_error, err);
        if (result.ok && !(err <= options.atol + options.rtol * std::abs(numeric))) {
          std::ostringstream msg;
          msg << "Jacobian mismatch for input " << checked[c] << " " << describe(x) << ", element " << j
              << ", output element " << k << ": analytic " << a << " vs numeric " << numeric;
          result.ok = false;
          result.message = msg.str();
        }
      }
    }
  }
  return result;
}

GradcheckResult gradgradcheck(const TensorFunction& f, const TensorList& inputs, GradcheckOptions options) {
  const std::vector<std::size_t> checked = checked_inputs("gradgradcheck", inputs);
  Tensor out = f(inputs);
  Generator gen(options.seed);
  Tensor v = randn(out.shape(), kFloat64, out.device(), &gen).requires_grad_();

  // The vector-Jacobian product as a function of (inputs, v), flattened into one tensor.
  const std::size_t n_inputs = inputs.size();
  TensorFunction vjp = [&f, &checked, n_inputs](const TensorList& args) -> Tensor {
    TensorList primal(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(n_inputs));
    const Tensor& vec = args[n_inputs];
    Tensor y = f(primal);
    TensorList wrt;
    for (std::size_t i : checked) wrt.push_back(primal[i]);
    TensorList pieces;
    TensorList grads;
    if (y.requires_grad())
      grads = grad({y}, wrt, {vec}, {.create_graph = true, .retain_graph = true, .allow_unused = true});
    for (std::size_t c = 0; c < wrt.size(); ++c) {
      Tensor g = c < grads.size() && grads[c].defined() ? grads[c] : zeros_like(wrt[c]);
      pieces.push_back(reshape(g, {-1}));
    }
    return concat(pieces, 0);
  };
  TensorList args = inputs;
  args.push_back(v);
  return gradcheck(vjp, args, options);
}

}  // namespace mg
