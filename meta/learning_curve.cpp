#include "learning_curve.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

#include "../tensor/error.h"

namespace mg::meta {

namespace {

struct Row {
  double iteration = 0, train = NAN, eval = NAN, eval_ci = NAN, accuracy = NAN;
};

double field(const std::vector<std::string>& cells, std::size_t i) {
  if (i >= cells.size() || cells[i].empty()) return NAN;
  try {
    return std::stod(cells[i]);
  } catch (const std::exception&) {
    return NAN;
  }
}

std::vector<Row> read_rows(const std::string& path) {
  std::ifstream in(path);
  MG_CHECK(in.good(), "learning curve: cannot read ", path);
  std::string line;
  std::getline(in, line);  // header
  std::vector<Row> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) cells.push_back(cell);
    Row r{field(cells, 0), field(cells, 1), field(cells, 2), field(cells, 3), field(cells, 4)};
    if (std::isfinite(r.iteration)) rows.push_back(r);
  }
  MG_CHECK(!rows.empty(), "learning curve: ", path, " has no rows");
  return rows;
}

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  double map(double v, double pixels_lo, double pixels_hi) const {
    const double a = log ? std::log10(lo) : lo, b = log ? std::log10(hi) : hi;
    const double x = log ? std::log10(std::max(v, lo)) : v;
    return pixels_lo + (x - a) / (b - a) * (pixels_hi - pixels_lo);
  }
};

std::string number(double v) {
  std::ostringstream out;
  out.precision(3);
  out << v;
  return out.str();
}

// One panel: a box at (x0, y0) of size w x h with axes, ticks and the series drawn by draw().
template <typename Draw>
void panel(std::ostringstream& svg, double x0, double y0, double w, double h, const Axis& xa, const Axis& ya,
           const std::string& label, Draw draw) {
  svg << "<rect x='" << x0 << "' y='" << y0 << "' width='" << w << "' height='" << h
      << "' fill='none' stroke='#444'/>\n";
  svg << "<text x='" << x0 + w / 2 << "' y='" << y0 - 8 << "' text-anchor='middle' font-size='13'>" << label
      << "</text>\n";
  for (int i = 0; i <= 4; ++i) {
    const double fx = xa.lo + (xa.hi - xa.lo) * i / 4.0;
    const double px = xa.map(fx, x0, x0 + w);
    svg << "<line x1='" << px << "' y1='" << y0 + h << "' x2='" << px << "' y2='" << y0 + h + 4
        << "' stroke='#444'/><text x='" << px << "' y='" << y0 + h + 17 << "' text-anchor='middle' font-size='11'>"
        << (xa.hi >= 100 ? std::to_string(static_cast<int64_t>(std::llround(fx))) : number(fx)) << "</text>\n";
    const double fy = ya.log ? std::pow(10.0, std::log10(ya.lo) + (std::log10(ya.hi) - std::log10(ya.lo)) * i / 4.0)
                             : ya.lo + (ya.hi - ya.lo) * i / 4.0;
    const double py = ya.map(fy, y0 + h, y0);
    svg << "<line x1='" << x0 - 4 << "' y1='" << py << "' x2='" << x0 + w << "' y2='" << py
        << "' stroke='#ddd'/><text x='" << x0 - 6 << "' y='" << py + 4 << "' text-anchor='end' font-size='11'>"
        << number(fy) << "</text>\n";
  }
  svg << "<text x='" << x0 + w / 2 << "' y='" << y0 + h + 34
      << "' text-anchor='middle' font-size='12'>iteration</text>\n";
  draw();
}

}  // namespace

void write_learning_curve_svg(const std::string& metrics_csv, const std::string& svg_path, const std::string& title) {
  std::vector<Row> rows = read_rows(metrics_csv);
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.iteration < b.iteration; });

  // The training loss is noisy per iteration: average it over at most 300 buckets.
  const std::size_t buckets = std::min<std::size_t>(300, rows.size());
  std::vector<std::pair<double, double>> train;
  for (std::size_t b = 0; b < buckets; ++b) {
    const std::size_t from = b * rows.size() / buckets, to = (b + 1) * rows.size() / buckets;
    double sum = 0, it = 0;
    int n = 0;
    for (std::size_t i = from; i < to; ++i)
      if (std::isfinite(rows[i].train)) sum += rows[i].train, it += rows[i].iteration, ++n;
    if (n > 0) train.emplace_back(it / n, sum / n);
  }
  std::vector<Row> evals;
  bool has_accuracy = false;
  for (const Row& r : rows)
    if (std::isfinite(r.eval)) {
      evals.push_back(r);
      has_accuracy = has_accuracy || std::isfinite(r.accuracy);
    }

  Axis xa{0.0, std::max(1.0, rows.back().iteration)};
  Axis ya{std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()};
  auto extend = [&ya](double v) {
    if (std::isfinite(v) && v > 0) ya.lo = std::min(ya.lo, v), ya.hi = std::max(ya.hi, v);
  };
  for (const auto& [x, y] : train) extend(y);
  for (const Row& r : evals) extend(r.eval);
  if (!std::isfinite(ya.lo)) ya = {0.0, 1.0};
  if (ya.hi <= ya.lo) ya.hi = ya.lo * 2 + 1e-12;
  ya.log = ya.hi / ya.lo > 20.0;
  if (!ya.log) ya.lo = 0.0;

  const double w = 460, h = 300, top = 60, left = 70;
  const double width = has_accuracy ? 2 * w + 4 * left : w + 2 * left;
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << h + top + 80
      << "' font-family='sans-serif'>\n<rect width='100%' height='100%' fill='white'/>\n";
  svg << "<text x='" << width / 2 << "' y='22' text-anchor='middle' font-size='15'>" << title << "</text>\n";
  panel(svg, left, top, w, h, xa, ya, std::string("loss") + (ya.log ? " (log scale)" : ""), [&] {
    svg << "<polyline fill='none' stroke='#1f77b4' stroke-width='1.5' points='";
    for (const auto& [x, y] : train) svg << xa.map(x, left, left + w) << "," << ya.map(y, top + h, top) << " ";
    svg << "'/>\n";
    for (const Row& r : evals) {
      const double px = xa.map(r.iteration, left, left + w);
      const double ci = std::isfinite(r.eval_ci) ? r.eval_ci : 0.0;
      svg << "<line x1='" << px << "' y1='" << ya.map(r.eval - ci, top + h, top) << "' x2='" << px << "' y2='"
          << ya.map(r.eval + ci, top + h, top) << "' stroke='#d62728'/>";
      svg << "<circle cx='" << px << "' cy='" << ya.map(r.eval, top + h, top) << "' r='2.5' fill='#d62728'/>\n";
    }
    svg << "<text x='" << left + w - 8 << "' y='" << top + 18
        << "' text-anchor='end' font-size='12' fill='#1f77b4'>meta-training query loss</text>\n";
    if (!evals.empty())
      svg << "<text x='" << left + w - 8 << "' y='" << top + 34
          << "' text-anchor='end' font-size='12' fill='#d62728'>held-out loss (95% interval)</text>\n";
  });
  if (has_accuracy) {
    const double x0 = 2 * left + w + left;
    Axis acc{0.0, 100.0};
    panel(svg, x0, top, w, h, xa, acc, "held-out accuracy (%)", [&] {
      svg << "<polyline fill='none' stroke='#2ca02c' stroke-width='1.5' points='";
      for (const Row& r : evals)
        if (std::isfinite(r.accuracy))
          svg << xa.map(r.iteration, x0, x0 + w) << "," << acc.map(100 * r.accuracy, top + h, top) << " ";
      svg << "'/>\n";
    });
  }
  svg << "</svg>\n";
  std::ofstream out(svg_path, std::ios::trunc);
  out << svg.str();
  MG_CHECK(out.good(), "learning curve: cannot write ", svg_path);
}

}  // namespace mg::meta
