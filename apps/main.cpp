// metagrad: meta-train, evaluate and inspect few-shot learners from the command line.
// With no arguments it trains MAML on the sinusoid regression tasks of Finn et al. (2017).
#include <exception>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "../tensor/error.h"
#include "commands.h"

namespace {

constexpr const char* kUsage =
    "usage: metagrad [COMMAND] [--flag value ...]\n"
    "\n"
    "commands:\n"
    "  train        meta-train a model (the default command: no arguments trains sinusoid MAML)\n"
    "  eval         evaluate a checkpoint on new tasks: mean and 95% interval\n"
    "  info         build features: SIMD level, OpenMP threads, CUDA devices\n"
    "  grad-check   compare the exact MAML meta-gradient with finite differences\n"
    "  plot         draw a run's learning curve (SVG) from its metrics.csv\n"
    "\n"
    "'metagrad COMMAND --help' lists a command's flags.\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string command = "train";
  if (!args.empty() && args[0].rfind("--", 0) != 0) {
    command = args[0];
    args.erase(args.begin());
  } else if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    command = "help";
  }
  try {
    if (command == "help") {
      std::cout << kUsage;
      return 0;
    }
    if (command == "train") return mg::app::train_command(args);
    if (command == "eval") return mg::app::eval_command(args);
    if (command == "info") return mg::app::info_command(args);
    if (command == "grad-check") return mg::app::grad_check_command(args);
    if (command == "plot") return mg::app::plot_command(args);
    std::cerr << "metagrad: error: unknown command '" << command << "'\n\n" << kUsage;
    return mg::app::kExitUsage;
  } catch (const mg::Error& e) {
    std::cerr << "metagrad " << command << ": error: " << e.what() << "\n";
    return mg::app::kExitUsage;
  } catch (const std::bad_alloc&) {
    std::cerr << "metagrad " << command << ": error: out of memory\n";
    return mg::app::kExitFailure;
  } catch (const std::exception& e) {
    std::cerr << "metagrad " << command << ": error: " << e.what() << "\n";
    return mg::app::kExitFailure;
  }
}
