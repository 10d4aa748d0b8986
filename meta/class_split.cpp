#include "class_split.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <utility>

#include "../tensor/error.h"
#include "../tensor/philox.h"

namespace mg::meta {

namespace {

const char* part_name(SplitPart part) {
  switch (part) {
    case SplitPart::Train: return "train";
    case SplitPart::Val: return "val";
    case SplitPart::Test: return "test";
  }
  return "?";
}

void check_fractions(const SplitFractions& f) {
  for (double v : {f.train, f.val, f.test})
    MG_CHECK(std::isfinite(v) && v >= 0.0 && v <= 1.0, "class split: fractions must lie in [0, 1], got train ",
             f.train, ", val ", f.val, ", test ", f.test);
  const double total = f.train + f.val + f.test;
  MG_CHECK(std::abs(total - 1.0) <= 1e-6, "class split: fractions must add up to 1, got train ", f.train, " + val ",
           f.val, " + test ", f.test, " = ", total);
}

}  // namespace

std::vector<int64_t> sample_indices(int64_t n, int64_t k, Generator& gen) {
  MG_CHECK(n >= 0 && k >= 0 && k <= n, "sample_indices: cannot pick ", k, " distinct indices out of ", n);
  std::vector<int64_t> pool(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) pool[static_cast<std::size_t>(i)] = i;
  if (k == 0) return {};
  const uint64_t seed = gen.seed();
  const uint64_t start = gen.advance(static_cast<uint64_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    const uint64_t bits = philox::bits64(philox::draw(seed, start + static_cast<uint64_t>(i)));
    const int64_t j = i + static_cast<int64_t>(bits % static_cast<uint64_t>(n - i));
    std::swap(pool[static_cast<std::size_t>(i)], pool[static_cast<std::size_t>(j)]);
  }
  pool.resize(static_cast<std::size_t>(k));
  return pool;
}

std::vector<int64_t> random_permutation(int64_t n, Generator& gen) { return sample_indices(n, n, gen); }

NameSplit split_names(std::vector<std::string> names, SplitFractions fractions, uint64_t seed) {
  check_fractions(fractions);
  std::sort(names.begin(), names.end());
  const auto dup = std::adjacent_find(names.begin(), names.end());
  MG_CHECK(dup == names.end(), "class split: the name '", *dup, "' appears more than once");
  const int64_t n = static_cast<int64_t>(names.size());
  Generator gen(seed);
  const std::vector<int64_t> order = random_permutation(n, gen);
  const auto n_train = static_cast<int64_t>(std::llround(fractions.train * static_cast<double>(n)));
  const auto n_train_val = std::min<int64_t>(
      n, static_cast<int64_t>(std::llround((fractions.train + fractions.val) * static_cast<double>(n))));
  NameSplit out;
  for (int64_t i = 0; i < n; ++i) {
    std::string& name = names[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])];
    (i < n_train ? out.train : i < n_train_val ? out.val : out.test).push_back(std::move(name));
  }
  for (auto* part : {&out.train, &out.val, &out.test}) std::sort(part->begin(), part->end());
  return out;
}

ClassSplit ClassSplit::all() { return ClassSplit(); }

ClassSplit ClassSplit::part(SplitPart part, SplitFractions fractions, uint64_t seed) {
  check_fractions(fractions);
  ClassSplit s;
  s.kind_ = Kind::Part;
  s.part_ = part;
  s.fractions_ = fractions;
  s.seed_ = seed;
  return s;
}

ClassSplit ClassSplit::names(std::vector<std::string> names) {
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  MG_CHECK(dup == sorted.end(), "class split: the name '", *dup, "' is listed more than once");
  ClassSplit s;
  s.kind_ = Kind::Names;
  s.names_ = std::move(names);
  return s;
}

std::vector<std::string> ClassSplit::select(const std::vector<std::string>& available,
                                            std::string_view context) const {
  std::set<std::string> chosen;
  switch (kind_) {
    case Kind::All: return available;
    case Kind::Part: {
      NameSplit split = split_names(available, fractions_, seed_);
      std::vector<std::string>& part = part_ == SplitPart::Train ? split.train
                                       : part_ == SplitPart::Val ? split.val
                                                                 : split.test;
      chosen.insert(part.begin(), part.end());
      break;
    }
    case Kind::Names: {
      const std::set<std::string> known(available.begin(), available.end());
      for (const std::string& name : names_)
        MG_CHECK(known.count(name) != 0, "class split: '", name, "' is not among the ", available.size(), " ",
                 context);
      chosen.insert(names_.begin(), names_.end());
      break;
    }
  }
  std::vector<std::string> out;
  for (const std::string& name : available)
    if (chosen.count(name) != 0) out.push_back(name);
  return out;
}

std::string ClassSplit::describe() const {
  std::ostringstream out;
  switch (kind_) {
    case Kind::All: out << "all"; break;
    case Kind::Part:
      out << part_name(part_) << " part (" << fractions_.train << "/" << fractions_.val << "/" << fractions_.test
          << ", seed " << seed_ << ")";
      break;
    case Kind::Names: out << names_.size() << " named classes"; break;
  }
  return out.str();
}

}  // namespace mg::meta
