#pragma once
// Which classes a sampler may draw from (meta-train / meta-val / meta-test splits of alphabets,
// characters or languages), and the seeded index sampling the classification samplers share.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../tensor/creation.h"

namespace mg::meta {

// Fractions of the classes for each part; each in [0, 1], adding up to 1.
struct SplitFractions {
  double train = 0.8;
  double val = 0.1;
  double test = 0.1;
};

enum class SplitPart { Train, Val, Test };

struct NameSplit {
  std::vector<std::string> train;
  std::vector<std::string> val;
  std::vector<std::string> test;
};

// Sorts the names (so the result does not depend on the order they were listed in), shuffles them
// with seed and cuts at the rounded cumulative fractions: train gets round(f_train * n), val
// round((f_train + f_val) * n) - round(f_train * n), test the rest. Each part comes back sorted.
// Throws on duplicate names or fractions that are negative or do not add up to 1.
NameSplit split_names(std::vector<std::string> names, SplitFractions fractions, uint64_t seed);

// A caller's choice of classes: every class, one part of a seeded split, or an explicit list.
class ClassSplit {
 public:
  static ClassSplit all();
  static ClassSplit part(SplitPart part, SplitFractions fractions = {}, uint64_t seed = 0);
  static ClassSplit names(std::vector<std::string> names);

  // The chosen names among available, in available's order. context names the data for messages
  // ("omniglot alphabets under '/data/omniglot'"); a listed name that is not available throws.
  std::vector<std::string> select(const std::vector<std::string>& available, std::string_view context) const;
  std::string describe() const;  // "all", "train part (0.8/0.1/0.1, seed 3)", "3 named classes"

 private:
  enum class Kind { All, Part, Names };
  Kind kind_ = Kind::All;
  SplitPart part_ = SplitPart::Train;
  SplitFractions fractions_{};
  uint64_t seed_ = 0;
  std::vector<std::string> names_;
};

// k distinct indices from [0, n), in random order (a partial Fisher-Yates shuffle driven by gen:
// 64 random bits per pick, so the modulo bias is below 2^-40 for any n we meet).
std::vector<int64_t> sample_indices(int64_t n, int64_t k, Generator& gen);
// A random permutation of [0, n).
std::vector<int64_t> random_permutation(int64_t n, Generator& gen);

}  // namespace mg::meta
