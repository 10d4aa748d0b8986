#include <filesystem>
#include <iostream>

#include "../meta/learning_curve.h"
#include "../tensor/error.h"
#include "arguments.h"
#include "commands.h"

namespace mg::app {

int plot_command(const std::vector<std::string>& args) {
  const std::vector<FlagSpec> specs{
      {"metrics", "a metrics.csv written by 'metagrad train' (required)", false, "FILE"},
      {"out", "the SVG to write (default: learning_curve.svg beside the CSV)", false, "FILE"},
      {"title", "the picture's title (default: the CSV's folder name)", false, "TEXT"},
      {"help", "this list", true},
  };
  const Arguments a(args, specs, "plot");
  if (a.flag("help")) {
    std::cout << "usage: metagrad plot --metrics DIR/metrics.csv [--out FILE.svg] [--title TEXT]\n\n"
              << usage_lines(specs);
    return 0;
  }
  const auto metrics = a.text("metrics");
  MG_CHECK(metrics.has_value(), "--metrics FILE is required");
  const std::filesystem::path csv(*metrics);
  const std::string out = a.text("out", (csv.parent_path() / "learning_curve.svg").string());
  meta::write_learning_curve_svg(csv.string(), out, a.text("title", csv.parent_path().filename().string()));
  std::cout << "wrote " << out << "\n";
  return 0;
}

}  // namespace mg::app
