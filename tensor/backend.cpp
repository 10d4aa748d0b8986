#include "backend.h"

#include <array>
#include <atomic>

#include "cpu/cpu_backend.h"
#include "error.h"
#include "tensor.h"

#if MG_HAVE_CUDA
#include "../cuda/cuda_backend.h"
#endif

namespace mg {
namespace {

std::array<std::atomic<Backend*>, kNumDeviceTypes>& registry() {
  static std::array<std::atomic<Backend*>, kNumDeviceTypes> backends{};
  return backends;
}

int slot(DeviceType type) {
  const int i = static_cast<int>(type);
  MG_CHECK(i >= 0 && i < kNumDeviceTypes, "backend: unknown device type ", i);
  return i;
}

// The CUDA backend registers itself the first time a CUDA device is asked for, not when the
// library loads: a static library would drop a registration object nothing refers to, and
// starting the CUDA driver costs a CPU-only program time it need not spend. Null when metagrad
// was built without CUDA or no device is visible.
Backend* cuda_backend_once() {
#if MG_HAVE_CUDA
  static Backend* const backend = [] {
    Backend* b = cuda::backend_if_device_present();
    if (b != nullptr) register_backend(DeviceType::CUDA, b);
    return b;
  }();
  return backend;
#else
  return nullptr;
#endif
}

}  // namespace

Backend& backend_for(Device device) {
  Backend* backend = registry()[slot(device.type)].load(std::memory_order_acquire);
  if (backend != nullptr) return *backend;
  // The CPU backend is always there; asking for it by function keeps it linked in.
  if (device.is_cpu()) return cpu_backend();
  if (device.is_cuda()) {
    if (Backend* cuda = cuda_backend_once()) return *cuda;
#if MG_HAVE_CUDA
    MG_FAIL("no kernels for device ", device, ": metagrad was built with CUDA, but no CUDA device is visible to",
            " this process (no driver, no GPU, or CUDA_VISIBLE_DEVICES hides them)");
#endif
  }
  MG_FAIL("no kernels for device ", device, ": metagrad was built without CUDA (MG_CUDA=OFF)",
          " or the CUDA backend was not registered");
}

bool Backend::conv3x3(const Tensor&, const Tensor&, const Tensor&, int64_t, const Tensor&) { return false; }
Tensor Backend::conv3x3_weight_grad(const Tensor&, const Tensor&, int64_t) { return Tensor(); }

std::unique_ptr<DeviceGraph> Backend::capture_graph(Device device, const std::function<void()>&) {
  MG_FAIL("capture_graph: ", device, " has no graph capture; it needs a CUDA device");
}

std::unique_ptr<DeviceGraph> capture_graph(Device device, const std::function<void()>& work) {
  return backend_for(device).capture_graph(device, work);
}

bool capturing_graph(Device device) { return !device.is_cpu() && backend_for(device).capturing_graph(device); }

void register_backend(DeviceType type, Backend* backend) {
  registry()[slot(type)].store(backend, std::memory_order_release);
}

bool has_backend(DeviceType type) {
  if (type == DeviceType::CPU || registry()[slot(type)].load(std::memory_order_acquire) != nullptr) return true;
  return type == DeviceType::CUDA && cuda_backend_once() != nullptr;
}

const char* unary_op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "neg";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::Sqrt: return "sqrt";
    case UnaryOp::Rsqrt: return "rsqrt";
    case UnaryOp::Abs: return "abs";
    case UnaryOp::Sin: return "sin";
    case UnaryOp::Cos: return "cos";
    case UnaryOp::Tanh: return "tanh";
    case UnaryOp::Sigmoid: return "sigmoid";
    case UnaryOp::Relu: return "relu";
    case UnaryOp::GeluTanh: return "gelu_tanh";
    case UnaryOp::GeluErf: return "gelu";
    case UnaryOp::Softplus: return "softplus";
    case UnaryOp::Erf: return "erf";
    case UnaryOp::Sign: return "sign";
    case UnaryOp::Reciprocal: return "reciprocal";
    case UnaryOp::Square: return "square";
    case UnaryOp::Count: break;
  }
  return "unknown_unary";
}

const char* binary_op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
    case BinaryOp::Pow: return "pow";
    case BinaryOp::Maximum: return "maximum";
    case BinaryOp::Minimum: return "minimum";
    case BinaryOp::MulPositiveMask: return "mul_positive_mask";
    case BinaryOp::Eq: return "eq";
    case BinaryOp::Ne: return "ne";
    case BinaryOp::Lt: return "lt";
    case BinaryOp::Le: return "le";
    case BinaryOp::Gt: return "gt";
    case BinaryOp::Ge: return "ge";
    case BinaryOp::Count: break;
  }
  return "unknown_binary";
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
    case ReduceOp::Count: break;
  }
  return "unknown_reduce";
}

}  // namespace mg
