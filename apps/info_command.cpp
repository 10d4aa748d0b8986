#include <iostream>

#include "../tensor/build_info.h"
#include "../tensor/threads.h"
#include "arguments.h"
#include "commands.h"

namespace mg::app {

int info_command(const std::vector<std::string>& args) {
  const std::vector<FlagSpec> specs{{"help", "this list", true}};
  const Arguments a(args, specs, "info");
  if (a.flag("help")) {
    std::cout << "usage: metagrad info\n" << usage_lines(specs);
    return 0;
  }
  const BuildInfo b = build_info();
  std::cout << "metagrad build\n"
            << "  compiler       " << b.compiler << " (" << b.build_type << ")\n"
            << "  cpu kernels    " << b.simd << "\n"
            << "  openmp         " << (b.openmp ? "yes" : "no") << ", " << num_threads() << " threads\n"
            << "  cuda           "
            << (b.cuda_compiled ? "compiled, " + std::to_string(b.cuda_devices) + " device(s) visible"
                                : std::string("not compiled"))
            << "\n";
  if (b.cuda_compiled) std::cout << "  cuda versions  " << b.cuda_versions << "\n";
  for (const std::string& line : b.cuda_device_lines) std::cout << "  gpu            " << line << "\n";
  std::cout << "  dtypes         float32, float64, int64\n";
  return 0;
}

}  // namespace mg::app
