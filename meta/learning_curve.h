#pragma once
// The learning-curve picture of a run: an SVG drawn from the trainer's metrics.csv, with the
// meta-training loss (averaged over buckets of iterations) and the held-out loss with its 95%
// interval on one panel, and held-out accuracy on a second panel for classification. Plain SVG,
// viewable in any browser, no plotting library.
#include <string>

namespace mg::meta {

// Throws mg::Error when the CSV cannot be read or has no rows.
void write_learning_curve_svg(const std::string& metrics_csv, const std::string& svg_path, const std::string& title);

}  // namespace mg::meta
