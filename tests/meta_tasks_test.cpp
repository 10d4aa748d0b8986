// Task samplers: sinusoid regression, Omniglot-layout image folders and word lists. Shapes, dtypes
// and label ranges; reproducibility by seed; the preprocessing (PNG decoding, area resize, ink
// convention, rotations); class splits; and the errors bad folders and files must give.
// Synthetic folders are written to a temporary directory; the shared Omniglot and word-list data
// (MG_TEST_DATA_DIR, default ../shared/data next to the repository) are used when present and
// skipped with a message when not.
#include <doctest/doctest.h>

#include "check_error.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <map>
#include <numbers>
#include <numeric>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../autograd/ops.h"
#include "../meta/class_split.h"
#include "../meta/omniglot.h"
#include "../meta/png_image.h"
#include "../meta/sinusoid.h"
#include "../meta/task.h"
#include "../meta/words.h"
#include "../tensor/creation.h"

#ifndef _WIN32
#include <unistd.h>
#endif

namespace {

namespace fs = std::filesystem;
using namespace mg;
using namespace mg::meta;


// A fresh directory under the system's temporary folder, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
#ifndef _WIN32
    const long pid = static_cast<long>(::getpid());
#else
    const long pid = 0;
#endif
    path_ = fs::temp_directory_path() / ("mg_meta_tasks_" + std::to_string(pid) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

fs::path data_dir() {
  if (const char* env = std::getenv("MG_TEST_DATA_DIR"); env != nullptr && env[0] != '\0') return fs::path(env);
  // MG_FIXTURES_DIR is <repo>/tests/fixtures; the shared data sit next to the repository.
  return fs::path(MG_FIXTURES_DIR).parent_path().parent_path().parent_path() / "shared" / "data";
}

fs::path omniglot_root() { return data_dir() / "omniglot" / "images_background"; }
fs::path words_root() { return data_dir() / "words"; }

bool have(const fs::path& p, const char* what) {
  std::error_code ec;
  if (fs::is_directory(p, ec)) return true;
  MESSAGE("skipping: no " << std::string(what) << " at '" << p.string() << "' (set MG_TEST_DATA_DIR)");
  return false;
}

std::vector<double> values(const Tensor& t) { return t.values_as_double(); }

bool equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && values(a) == values(b);
}

bool equal(const Task& a, const Task& b) {
  return equal(a.support_x, b.support_x) && equal(a.support_y, b.support_y) && equal(a.query_x, b.query_x) &&
         equal(a.query_y, b.query_y) && a.class_names == b.class_names;
}

// Labels grouped by class: label l fills rows l*per..(l+1)*per-1.
void check_grouped_labels(const Tensor& y, int64_t ways, int64_t per) {
  REQUIRE(y.dtype() == kInt64);
  REQUIRE(y.shape() == Shape{ways * per});
  const std::vector<double> v = values(y);
  for (int64_t i = 0; i < ways * per; ++i) CHECK(v[static_cast<std::size_t>(i)] == static_cast<double>(i / per));
}

// A small Omniglot-layout folder: alphabets x characters x images of side x side, each image with
// a distinct, asymmetric pattern (so every rotation of it is different) in the files' convention
// (ink 0, paper 255).
void write_omniglot(const fs::path& root, const std::vector<std::pair<std::string, int>>& alphabets, int images,
                    int side = 12) {
  int serial = 0;
  for (const auto& [alphabet, characters] : alphabets)
    for (int c = 0; c < characters; ++c) {
      const fs::path dir = root / alphabet / ("character" + std::string(c < 9 ? "0" : "") + std::to_string(c + 1));
      fs::create_directories(dir);
      for (int i = 0; i < images; ++i, ++serial) {
        GrayImage img{side, side, std::vector<uint8_t>(static_cast<std::size_t>(side * side), 255)};
        for (int r = 0; r < side; ++r)
          for (int k = 0; k < side; ++k)
            if ((r * 7 + k * 3 + serial) % 5 == 0 || (r == 0 && k < serial % side + 1))
              img.pixels[static_cast<std::size_t>(r * side + k)] = 0;
        write_png_gray(dir / (std::to_string(1000 + serial) + "_" + std::to_string(i + 1) + ".png"), img);
      }
    }
}

void write_text(const fs::path& file, std::string_view text) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary);
  out << text;
}

// ------------------------------------------------------------------------------------------------
// Task batches
// ------------------------------------------------------------------------------------------------

TEST_CASE("stack_tasks adds a leading task dimension and task(i) takes it apart again") {
  SinusoidSampler sampler({.shots = 5, .queries = 7}, 11);
  const TaskBatch batch = sampler.batch(3, 4);
  CHECK(batch.size() == 4);
  CHECK(batch.support_x.shape() == Shape{4, 5, 1});
  CHECK(batch.query_y.shape() == Shape{4, 7, 1});
  for (int64_t i = 0; i < 4; ++i) CHECK(equal(batch.task(i), sampler.task(3 + static_cast<uint64_t>(i))));
  CHECK_MG_ERROR(batch.task(4), "TaskBatch::task", "out of range");

  SinusoidSampler other({.shots = 6, .queries = 7}, 11);
  CHECK_MG_ERROR(stack_tasks({sampler.task(0), other.task(0)}), "stack_tasks", "support_x", "task 1", "[6,1]",
                 "[5,1]");
  CHECK_MG_ERROR(stack_tasks({}), "stack_tasks", "at least one");
}

// ------------------------------------------------------------------------------------------------
// Sinusoid
// ------------------------------------------------------------------------------------------------

TEST_CASE("sinusoid tasks: shapes, dtypes and the function behind them") {
  for (DType dtype : {kFloat32, kFloat64}) {
    SinusoidSampler sampler({.shots = 10, .queries = 15, .dtype = dtype}, 5);
    const Task t = sampler.task(2);
    CHECK(t.support_x.shape() == Shape{10, 1});
    CHECK(t.support_y.shape() == Shape{10, 1});
    CHECK(t.query_x.shape() == Shape{15, 1});
    CHECK(t.query_y.shape() == Shape{15, 1});
    for (const Tensor* x : {&t.support_x, &t.support_y, &t.query_x, &t.query_y}) CHECK(x->dtype() == dtype);
    CHECK(t.class_names.empty());

    const SinusoidFunction f = sampler.function(2);
    const double tol = dtype == kFloat32 ? 1e-5 : 1e-12;
    const std::vector<double> x = values(t.query_x), y = values(t.query_y);
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(y[i] == doctest::Approx(f(x[i])).epsilon(tol));
    // The tensor form agrees with the scalar one.
    const std::vector<double> y2 = values(f(t.query_x));
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(y2[i] == doctest::Approx(y[i]).epsilon(tol * 10));

    // sample(gen, f) reports the same function for the same generator state.
    Generator g1(77), g2(77);
    SinusoidFunction reported;
    const Task a = sampler.sample(g1, reported);
    const Task b = sampler.sample(g2);
    CHECK(equal(a, b));
    CHECK(g1.offset() == g2.offset());
    const std::vector<double> ax = values(a.support_x), ay = values(a.support_y);
    for (std::size_t i = 0; i < ax.size(); ++i) CHECK(ay[i] == doctest::Approx(reported(ax[i])).epsilon(tol));
  }
}

TEST_CASE("sinusoid tasks are reproducible by seed") {
  SinusoidSampler a({}, 123), b({}, 123), c({}, 124);
  CHECK(equal(a.task(0), b.task(0)));
  CHECK(equal(a.task(9), b.task(9)));
  CHECK_FALSE(equal(a.task(0), c.task(0)));
  CHECK_FALSE(equal(a.task(0), a.task(1)));
  // The stream does not depend on the order tasks are asked for.
  const Task t5 = a.task(5);
  (void)a.task(2);
  CHECK(equal(a.task(5), t5));
  // next() walks the stream; the cursor resumes it.
  CHECK(equal(a.next(), b.task(0)));
  CHECK(equal(a.next(), b.task(1)));
  CHECK(a.cursor() == 2);
  const TaskBatch nb = a.next_batch(3);
  CHECK(equal(nb.task(2), b.task(4)));
  SinusoidSampler resumed({}, 123);
  resumed.set_cursor(a.cursor());
  CHECK(equal(resumed.next(), a.next()));
  // A caller's generator gives the same tasks for the same seed.
  Generator g1(9), g2(9);
  CHECK(equal(a.sample(g1), b.sample(g2)));
  CHECK(equal(a.sample(g1), b.sample(g2)));
}

TEST_CASE("sinusoid statistics follow Finn et al. 2017") {
  SinusoidSampler sampler({.shots = 5, .queries = 5}, 2024);
  const int n = 2000;
  double amp_sum = 0, phase_sum = 0, amp_min = 1e9, amp_max = -1e9, phase_min = 1e9, phase_max = -1e9;
  double x_min = 1e9, x_max = -1e9, x_sum = 0;
  for (int i = 0; i < n; ++i) {
    const SinusoidFunction f = sampler.function(static_cast<uint64_t>(i));
    amp_sum += f.amplitude, phase_sum += f.phase;
    amp_min = std::min(amp_min, f.amplitude), amp_max = std::max(amp_max, f.amplitude);
    phase_min = std::min(phase_min, f.phase), phase_max = std::max(phase_max, f.phase);
    if (i < 200) {
      for (double x : values(sampler.task(static_cast<uint64_t>(i)).support_x)) {
        x_min = std::min(x_min, x), x_max = std::max(x_max, x), x_sum += x;
      }
    }
  }
  CHECK(amp_min >= 0.1);
  CHECK(amp_max <= 5.0);
  CHECK(phase_min >= 0.0);
  CHECK(phase_max <= std::numbers::pi);
  // Uniform means, to ~5 standard errors (sd of the mean: 1.41/sqrt(2000) = 0.032, 0.91/sqrt(2000) = 0.020).
  CHECK(std::abs(amp_sum / n - 2.55) < 0.16);
  CHECK(std::abs(phase_sum / n - std::numbers::pi / 2) < 0.1);
  CHECK(amp_min < 0.3);
  CHECK(amp_max > 4.8);
  CHECK(x_min >= -5.0);
  CHECK(x_max <= 5.0);
  CHECK(x_min < -4.8);
  CHECK(x_max > 4.8);
  CHECK(std::abs(x_sum / 1000.0) < 0.5);
}

TEST_CASE("sinusoid options are validated") {
  CHECK_MG_ERROR(SinusoidSampler({.shots = -1}), "sinusoid", "shots");
  CHECK_MG_ERROR(SinusoidSampler({.amplitude_min = 3, .amplitude_max = 1}), "sinusoid", "amplitude");
  CHECK_MG_ERROR(SinusoidSampler({.dtype = kInt64}), "sinusoid", "dtype");
}

// ------------------------------------------------------------------------------------------------
// Class splits and index sampling
// ------------------------------------------------------------------------------------------------

TEST_CASE("split_names: disjoint, covering, seeded and independent of the input order") {
  std::vector<std::string> names;
  for (int i = 0; i < 50; ++i) names.push_back("class" + std::to_string(i));
  const NameSplit s = split_names(names, {0.6, 0.2, 0.2}, 3);
  CHECK(s.train.size() == 30);
  CHECK(s.val.size() == 10);
  CHECK(s.test.size() == 10);
  std::set<std::string> all;
  for (const auto* part : {&s.train, &s.val, &s.test}) {
    CHECK(std::is_sorted(part->begin(), part->end()));
    all.insert(part->begin(), part->end());
  }
  CHECK(all.size() == 50);  // disjoint and covering
  std::vector<std::string> reversed(names.rbegin(), names.rend());
  const NameSplit again = split_names(reversed, {0.6, 0.2, 0.2}, 3);
  CHECK(again.train == s.train);
  CHECK(again.test == s.test);
  CHECK(split_names(names, {0.6, 0.2, 0.2}, 4).train != s.train);

  CHECK_MG_ERROR(split_names(names, {0.5, 0.2, 0.2}, 0), "fractions must add up to 1");
  CHECK_MG_ERROR(split_names(names, {1.2, -0.2, 0.0}, 0), "fractions must lie in [0, 1]");
  CHECK_MG_ERROR(split_names({"a", "b", "a"}, {1, 0, 0}, 0), "'a'", "more than once");

  const ClassSplit named = ClassSplit::names({"class7", "class3"});
  CHECK(named.select(names, "test classes") == std::vector<std::string>{"class3", "class7"});
  CHECK_MG_ERROR(ClassSplit::names({"nope"}).select(names, "test classes"), "'nope'", "not among", "test classes");
  CHECK(ClassSplit::all().select(names, "x") == names);
  std::vector<std::string> val = ClassSplit::part(SplitPart::Val, {0.6, 0.2, 0.2}, 3).select(names, "x");
  std::sort(val.begin(), val.end());  // select keeps the order of the available names
  CHECK(val == s.val);
}

TEST_CASE("sample_indices draws distinct indices, reproducibly") {
  Generator g1(5), g2(5);
  const std::vector<int64_t> a = sample_indices(100, 20, g1);
  CHECK(a == sample_indices(100, 20, g2));
  CHECK(g1.offset() == 20);
  CHECK(std::set<int64_t>(a.begin(), a.end()).size() == 20);
  for (int64_t i : a) CHECK((i >= 0 && i < 100));
  std::vector<int64_t> perm = random_permutation(30, g1);
  std::sort(perm.begin(), perm.end());
  for (int64_t i = 0; i < 30; ++i) CHECK(perm[static_cast<std::size_t>(i)] == i);
  CHECK_MG_ERROR(sample_indices(3, 4, g1), "sample_indices", "4", "3");
}

// ------------------------------------------------------------------------------------------------
// PNG decoding, resizing, rotation
// ------------------------------------------------------------------------------------------------

TEST_CASE("PNG round trip, corrupt files and the area resize") {
  TempDir tmp;
  GrayImage img{7, 5, {}};
  for (int i = 0; i < 35; ++i) img.pixels.push_back(static_cast<uint8_t>(i * 7));
  write_png_gray(tmp.path() / "a.png", img);
  const GrayImage back = read_png_gray(tmp.path() / "a.png");
  CHECK(back.width == 7);
  CHECK(back.height == 5);
  CHECK(back.pixels == img.pixels);

  write_text(tmp.path() / "garbage.png", "this is not a png at all");
  CHECK_MG_ERROR(read_png_gray(tmp.path() / "garbage.png"), "garbage.png", "not a PNG");
  // A real signature and header, then the data cut short.
  std::ifstream in(tmp.path() / "a.png", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_text(tmp.path() / "truncated.png", bytes.substr(0, 40));
  CHECK_MG_ERROR(read_png_gray(tmp.path() / "truncated.png"), "truncated.png");
  CHECK_MG_ERROR(read_png_gray(tmp.path() / "missing.png"), "missing.png", "does not exist");

  // Area averaging preserves the mean and maps constants to constants.
  GrayImage big{105, 105, std::vector<uint8_t>(105 * 105)};
  double sum = 0;
  for (std::size_t i = 0; i < big.pixels.size(); ++i) {
    big.pixels[i] = static_cast<uint8_t>((i * 37 + i / 105 * 11) % 256);
    sum += big.pixels[i] / 255.0;
  }
  const std::vector<float> small = resize_area(big, 28, 28);
  REQUIRE(small.size() == 28 * 28);
  double small_sum = 0;
  for (float v : small) small_sum += v;
  CHECK(small_sum / (28 * 28) == doctest::Approx(sum / (105 * 105)).epsilon(1e-6));
  GrayImage flat{105, 105, std::vector<uint8_t>(105 * 105, 51)};
  for (float v : resize_area(flat, 28, 28)) CHECK(v == doctest::Approx(0.2).epsilon(1e-6));
  // Exact 2x2 blocks when the scale is an integer.
  GrayImage quad{4, 2, {0, 255, 255, 255, 255, 255, 0, 0}};
  const std::vector<float> q = resize_area(quad, 2, 1);
  CHECK(q[0] == doctest::Approx(0.75));
  CHECK(q[1] == doctest::Approx(0.5));
}

TEST_CASE("rot90 turns counterclockwise like numpy.rot90") {
  const Tensor m = tensor(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {2, 3});  // [[1,2,3],[4,5,6]]
  const Tensor r1 = rot90(m, 1);
  CHECK(r1.shape() == Shape{3, 2});
  CHECK(values(r1) == std::vector<double>{3, 6, 2, 5, 1, 4});
  CHECK(values(rot90(m, 2)) == std::vector<double>{6, 5, 4, 3, 2, 1});
  CHECK(values(rot90(m, 3)) == std::vector<double>{4, 1, 5, 2, 6, 3});
  CHECK(values(rot90(m, -1)) == values(rot90(m, 3)));
  CHECK(equal(rot90(m, 4), m));
  CHECK(equal(rot90(rot90(m, 1), 1), rot90(m, 2)));
}

// ------------------------------------------------------------------------------------------------
// Omniglot on a synthetic folder
// ------------------------------------------------------------------------------------------------

TEST_CASE("omniglot: enumeration, tasks, labels, rotations, within-alphabet and splits (synthetic)") {
  TempDir tmp;
  write_omniglot(tmp.path(), {{"Beta", 3}, {"Alpha", 2}, {"Gamma", 4}}, 6);
  auto ds = std::make_shared<OmniglotDataset>(tmp.path(), OmniglotOptions{.image_size = 8});
  CHECK(ds->alphabets() == std::vector<std::string>{"Alpha", "Beta", "Gamma"});
  REQUIRE(ds->characters().size() == 9);
  CHECK(ds->characters()[0].name == "Alpha/character01");
  CHECK(ds->characters()[2].name == "Beta/character01");
  CHECK(ds->characters()[2].alphabet == 1);
  CHECK(ds->characters()[0].files.size() == 6);

  // Ink = 1: the image is the inverted, resized file.
  const GrayImage file = read_png_gray(ds->characters()[4].files[3]);
  const std::vector<float> resized = resize_area(file, 8, 8);
  const std::vector<double> img = values(ds->image(4, 3));
  for (std::size_t i = 0; i < img.size(); ++i) CHECK(img[i] == doctest::Approx(1.0 - resized[i]));
  OmniglotDataset paper_one(tmp.path(), {.image_size = 8, .ink_is_one = false});
  const std::vector<double> img2 = values(paper_one.image(4, 3));
  for (std::size_t i = 0; i < img2.size(); ++i) CHECK(img2[i] == doctest::Approx(resized[i]));

  // Rotated images are the rotated image.
  for (int64_t t = 0; t < 4; ++t) CHECK(equal(ds->image(1, 2, t), rot90(ds->image(1, 2), t)));

  OmniglotSampler sampler(ds, {.ways = 5, .shots = 2, .queries = 3}, 42);
  CHECK(sampler.num_classes() == 36);
  const Task t = sampler.task(0);
  CHECK(t.support_x.shape() == Shape{10, 1, 8, 8});
  CHECK(t.query_x.shape() == Shape{15, 1, 8, 8});
  CHECK(t.support_x.dtype() == kFloat32);
  check_grouped_labels(t.support_y, 5, 2);
  check_grouped_labels(t.query_y, 5, 3);
  REQUIRE(t.class_names.size() == 5);
  CHECK(std::set<std::string>(t.class_names.begin(), t.class_names.end()).size() == 5);

  // Every image of label l is some drawing of l's character, turned by l's rotation, and the
  // K + Q drawings of a class are distinct.
  std::map<std::string, int64_t> index;
  for (std::size_t c = 0; c < ds->characters().size(); ++c) index[ds->characters()[c].name] = static_cast<int64_t>(c);
  for (int64_t label = 0; label < 5; ++label) {
    const std::string& name = t.class_names[static_cast<std::size_t>(label)];
    const std::size_t cut = name.rfind("/rot");
    REQUIRE(cut != std::string::npos);
    const int64_t character = index.at(name.substr(0, cut));
    const int64_t turns = std::stoi(name.substr(cut + 4)) / 90;
    std::set<int64_t> used;
    auto find_drawing = [&](const Tensor& row) {
      for (int64_t i = 0; i < 6; ++i)
        if (values(row) == values(rot90(ds->image(character, i), turns).reshape({8, 8}))) return i;
      return int64_t{-1};
    };
    for (int64_t s = 0; s < 2; ++s) {
      const int64_t i = find_drawing(t.support_x.select(0, label * 2 + s).select(0, 0));
      CHECK(i >= 0);
      used.insert(i);
    }
    for (int64_t q = 0; q < 3; ++q) {
      const int64_t i = find_drawing(t.query_x.select(0, label * 3 + q).select(0, 0));
      CHECK(i >= 0);
      used.insert(i);
    }
    CHECK(used.size() == 5);
  }

  // Reproducible by seed; float64 gives the same values.
  OmniglotSampler same(ds, {.ways = 5, .shots = 2, .queries = 3}, 42);
  CHECK(equal(same.task(0), t));
  CHECK(equal(same.task(7), sampler.task(7)));
  OmniglotSampler other(ds, {.ways = 5, .shots = 2, .queries = 3}, 43);
  CHECK_FALSE(equal(other.task(0), t));
  OmniglotSampler f64(ds, {.ways = 5, .shots = 2, .queries = 3, .dtype = kFloat64}, 42);
  const Task t64 = f64.task(0);
  CHECK(t64.support_x.dtype() == kFloat64);
  CHECK(values(t64.support_x) == values(t.support_x));

  // Without rotations every class is rot0.
  OmniglotSampler plain(ds, {.ways = 4, .shots = 1, .queries = 1, .rotations = false}, 1);
  CHECK(plain.num_classes() == 9);
  for (uint64_t i = 0; i < 10; ++i)
    for (const std::string& name : plain.task(i).class_names) CHECK(name.ends_with("/rot0"));

  // Within one alphabet: all class names share their alphabet. Alpha has only 2 characters, so
  // without rotations only Beta (3) and Gamma (4) can make 3-way tasks.
  OmniglotSampler within(ds, {.ways = 3, .shots = 1, .queries = 1, .rotations = false, .within_alphabet = true}, 8);
  std::set<std::string> alphabets_seen;
  for (uint64_t i = 0; i < 30; ++i) {
    const Task w = within.task(i);
    const std::string alphabet = w.class_names[0].substr(0, w.class_names[0].find('/'));
    alphabets_seen.insert(alphabet);
    for (const std::string& name : w.class_names) CHECK(name.starts_with(alphabet + "/"));
  }
  CHECK(alphabets_seen == std::set<std::string>{"Beta", "Gamma"});

  // Splits by alphabet and by character: disjoint, covering, and respected by the sampler.
  for (SplitLevel level : {SplitLevel::Alphabet, SplitLevel::Character}) {
    std::set<int64_t> seen;
    std::size_t total = 0;
    for (SplitPart part : {SplitPart::Train, SplitPart::Val, SplitPart::Test}) {
      OmniglotSampler s(ds,
                        {.ways = 1, .shots = 1, .queries = 0, .split_level = level,
                         .split = ClassSplit::part(part, {0.34, 0.33, 0.33}, 5)},
                        0);
      total += s.characters().size();
      seen.insert(s.characters().begin(), s.characters().end());
      const std::set<int64_t> mine(s.characters().begin(), s.characters().end());
      for (uint64_t i = 0; i < 5; ++i) {
        const std::string name = s.task(i).class_names[0];
        CHECK(mine.count(index.at(name.substr(0, name.rfind("/rot")))) == 1);
      }
      if (level == SplitLevel::Alphabet) {
        std::set<int64_t> alphabets;
        for (int64_t c : s.characters()) alphabets.insert(ds->characters()[static_cast<std::size_t>(c)].alphabet);
        CHECK(alphabets.size() == 1);  // whole alphabets: 3 alphabets split 1/1/1
      }
    }
    CHECK(total == 9);
    CHECK(seen.size() == 9);
  }
  OmniglotSampler named(ds, {.ways = 2, .shots = 1, .queries = 1, .split_level = SplitLevel::Alphabet,
                             .split = ClassSplit::names({"Alpha"})});
  CHECK(named.characters() == std::vector<int64_t>{0, 1});
}

TEST_CASE("omniglot: bad folders, files and settings give one clear error") {
  TempDir tmp;
  CHECK_MG_ERROR(OmniglotDataset(tmp.path() / "nowhere"), "omniglot", "nowhere", "does not exist");
  fs::create_directories(tmp.path() / "empty");
  CHECK_MG_ERROR(OmniglotDataset(tmp.path() / "empty"), "omniglot", "empty", "no alphabet folders");
  fs::create_directories(tmp.path() / "no_chars" / "Alpha");
  CHECK_MG_ERROR(OmniglotDataset(tmp.path() / "no_chars"), "Alpha", "no character folders");
  fs::create_directories(tmp.path() / "no_png" / "Alpha" / "character01");
  write_text(tmp.path() / "no_png" / "Alpha" / "character01" / "notes.txt", "hello");
  CHECK_MG_ERROR(OmniglotDataset(tmp.path() / "no_png"), "character01", "no .png files");

  const fs::path small = tmp.path() / "small";
  write_omniglot(small, {{"Alpha", 2}}, 4, 6);
  auto ds = std::make_shared<const OmniglotDataset>(small, OmniglotOptions{.image_size = 6});
  CHECK_MG_ERROR(OmniglotSampler(ds, {.ways = 3, .rotations = false}), "omniglot sampler", "only 2 classes", "3-way",
                 "small");
  CHECK_MG_ERROR(OmniglotSampler(ds, {.ways = 9, .shots = 1, .queries = 1}), "only 8 classes");
  CHECK_MG_ERROR(OmniglotSampler(ds, {.ways = 2, .shots = 2, .queries = 3}), "Alpha/character01", "4 images",
                 "shots + queries = 5");
  CHECK_MG_ERROR(OmniglotSampler(ds, {.ways = 2, .split = ClassSplit::names({"Alpha/character09"})}),
                 "'Alpha/character09'", "not among");
  CHECK_MG_ERROR(OmniglotSampler(ds, {.ways = 9, .shots = 1, .queries = 1, .within_alphabet = true}), "only 8 classes");
  CHECK_MG_ERROR(OmniglotSampler(nullptr, {}), "no dataset");

  // A corrupt PNG is reported, naming the file, when its character is first decoded.
  const fs::path bad = tmp.path() / "bad";
  write_omniglot(bad, {{"Alpha", 2}}, 4, 6);
  write_text(bad / "Alpha" / "character02" / "9999_99.png", "\x89PNG\r\n\x1a\n but then nothing sensible");
  auto bad_ds = std::make_shared<const OmniglotDataset>(bad, OmniglotOptions{.image_size = 6});
  CHECK(bad_ds->image(0, 0).shape() == Shape{1, 6, 6});  // the good character still decodes
  CHECK_MG_ERROR(bad_ds->preload(), "9999_99.png");
  CHECK_MG_ERROR(bad_ds->image(1, 0), "9999_99.png");

  // The same alphabet under two roots.
  CHECK_MG_ERROR(OmniglotDataset(std::vector<fs::path>{small, bad}), "alphabet 'Alpha'", "both");
}

// ------------------------------------------------------------------------------------------------
// Omniglot on the shared data
// ------------------------------------------------------------------------------------------------

TEST_CASE("omniglot: the shared images_background subset") {
  const fs::path root = omniglot_root();
  if (!have(root, "Omniglot data")) return;

  const GrayImage png = read_png_gray(root / "Greek" / "character01" / "0394_01.png");
  CHECK(png.width == 105);
  CHECK(png.height == 105);
  const auto ink = std::count(png.pixels.begin(), png.pixels.end(), uint8_t{0});
  const auto paper = std::count(png.pixels.begin(), png.pixels.end(), uint8_t{255});
  CHECK(ink + paper == 105 * 105);  // a 1-bit file
  CHECK(ink > 50);         // there is a stroke
  CHECK(paper > 5 * ink);  // on white paper

  auto ds = std::make_shared<const OmniglotDataset>(root);
  CHECK(ds->alphabets().size() == 8);
  CHECK(std::is_sorted(ds->alphabets().begin(), ds->alphabets().end()));
  CHECK(ds->characters().size() == 242);
  const Tensor img = ds->image(0, 0);
  CHECK(img.shape() == Shape{1, 28, 28});
  const std::vector<double> v = values(img);
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  CHECK(*std::max_element(v.begin(), v.end()) > 0.9);   // ink = 1
  CHECK(*std::min_element(v.begin(), v.end()) == 0.0);  // paper = 0
  CHECK(mean < 0.3);

  OmniglotSampler sampler(ds, {.ways = 5, .shots = 1, .queries = 15, .within_alphabet = true}, 7);
  CHECK(sampler.num_classes() == 242 * 4);
  for (uint64_t i = 0; i < 3; ++i) {
    const Task t = sampler.task(i);
    CHECK(t.support_x.shape() == Shape{5, 1, 28, 28});
    CHECK(t.query_x.shape() == Shape{75, 1, 28, 28});
    check_grouped_labels(t.support_y, 5, 1);
    check_grouped_labels(t.query_y, 5, 15);
    const std::string alphabet = t.class_names[0].substr(0, t.class_names[0].find('/'));
    for (const std::string& name : t.class_names) CHECK(name.starts_with(alphabet + "/"));
    const std::vector<double> qx = values(t.query_x);
    CHECK(*std::min_element(qx.begin(), qx.end()) >= 0.0);
    CHECK(*std::max_element(qx.begin(), qx.end()) <= 1.0);
  }
  CHECK(equal(sampler.task(1), OmniglotSampler(ds, sampler.options(), 7).task(1)));

  // Alphabet and character splits of the real folder: disjoint and covering.
  const NameSplit by_alphabet = split_names(ds->alphabets(), {0.5, 0.25, 0.25}, 1);
  CHECK(by_alphabet.train.size() == 4);
  CHECK(by_alphabet.val.size() == 2);
  CHECK(by_alphabet.test.size() == 2);
  std::set<std::string> alphabets(by_alphabet.train.begin(), by_alphabet.train.end());
  alphabets.insert(by_alphabet.val.begin(), by_alphabet.val.end());
  alphabets.insert(by_alphabet.test.begin(), by_alphabet.test.end());
  CHECK(alphabets.size() == 8);
  std::set<int64_t> characters;
  std::size_t total = 0;
  for (SplitPart part : {SplitPart::Train, SplitPart::Val, SplitPart::Test}) {
    OmniglotSampler s(ds, {.ways = 5, .split = ClassSplit::part(part, {0.7, 0.15, 0.15}, 1)}, 0);
    total += s.characters().size();
    characters.insert(s.characters().begin(), s.characters().end());
  }
  CHECK(total == 242);
  CHECK(characters.size() == 242);
}

// ------------------------------------------------------------------------------------------------
// Words
// ------------------------------------------------------------------------------------------------

TEST_CASE("words: byte tokens, padding, cutting and the padding mask") {
  const std::string word = "\xD0\xB0\xD0\xB5\xD1\x80\xD0\xBE\xD0\xB3\xD0\xB0\xD1\x80\xD0\xB0";  // аерогара
  const std::vector<int64_t> expected{0xD0, 0xB0, 0xD0, 0xB5, 0xD1, 0x80, 0xD0, 0xBE,
                                      0xD0, 0xB3, 0xD0, 0xB0, 0xD1, 0x80, 0xD0, 0xB0};
  CHECK(encode_word(word, 16) == expected);
  std::vector<int64_t> padded = expected;
  padded.resize(20, 0);
  CHECK(encode_word(word, 20) == padded);
  CHECK(encode_word(word, 4) == std::vector<int64_t>{0xD0, 0xB0, 0xD0, 0xB5});
  CHECK(encode_word("ab", 4) == std::vector<int64_t>{'a', 'b', 0, 0});
  CHECK(decode_word(encode_word(word, 20)) == word);

  const Tensor tokens = encode_words({"ab", "abcde"}, 4);
  CHECK(tokens.shape() == Shape{2, 4});
  CHECK(tokens.dtype() == kInt64);
  CHECK(values(tokens) == std::vector<double>{'a', 'b', 0, 0, 'a', 'b', 'c', 'd'});
  const Tensor mask = padding_mask(tokens);
  CHECK(mask.dtype() == kInt64);
  CHECK(values(mask) == std::vector<double>{0, 0, 1, 1, 0, 0, 0, 0});
  CHECK(padding_mask(tokens, kFloat32).dtype() == kFloat32);
  CHECK_MG_ERROR(padding_mask(tensor({1.0, 0.0})), "padding_mask", "int64");
  CHECK_MG_ERROR(encode_word("a", 0), "length");

  const fs::path root = words_root();
  if (!have(root, "word lists")) return;
  WordsDataset ds(root);
  CHECK(ds.languages().size() == 16);
  CHECK(ds.languages().front() == "bg");
  CHECK(ds.words(0).size() == 1000);
  CHECK(ds.words(0).front() == word);
}

TEST_CASE("words: tasks, reproducibility and splits by language (shared data)") {
  const fs::path root = words_root();
  if (!have(root, "word lists")) return;
  const WordsDataset ds(root);
  WordsSampler sampler(ds, {.ways = 5, .shots = 3, .queries = 4}, 3);
  const Task t = sampler.task(0);
  CHECK(t.support_x.shape() == Shape{15, 16});
  CHECK(t.query_x.shape() == Shape{20, 16});
  CHECK(t.support_x.dtype() == kInt64);
  check_grouped_labels(t.support_y, 5, 3);
  check_grouped_labels(t.query_y, 5, 4);
  const std::vector<double> qx = values(t.query_x);
  CHECK(*std::min_element(qx.begin(), qx.end()) >= 0);
  CHECK(*std::max_element(qx.begin(), qx.end()) < 256);
  // Rows are distinct words of their label's language, each starting with a real byte.
  std::map<std::string, std::set<std::string>> lexicon;
  for (std::size_t l = 0; l < ds.languages().size(); ++l) {
    const std::vector<std::string>& words = ds.words(static_cast<int64_t>(l));
    lexicon[ds.languages()[l]] = std::set<std::string>(words.begin(), words.end());
  }
  const std::vector<double> sx = values(t.support_x);
  std::set<std::string> support_words;
  for (int64_t r = 0; r < 15; ++r) {
    const std::vector<int64_t> row(sx.begin() + r * 16, sx.begin() + (r + 1) * 16);
    CHECK(row[0] != kPadToken);
    const std::string w = decode_word(row);
    CHECK(lexicon.at(t.class_names[static_cast<std::size_t>(r / 3)]).count(w) == 1);
    support_words.insert(w);
  }
  CHECK(support_words.size() == 15);
  CHECK(equal(WordsSampler(ds, sampler.options(), 3).task(0), t));
  CHECK_FALSE(equal(WordsSampler(ds, sampler.options(), 4).task(0), t));

  std::set<std::string> seen;
  std::size_t total = 0;
  for (SplitPart part : {SplitPart::Train, SplitPart::Val, SplitPart::Test}) {
    WordsSampler s(ds, {.ways = 2, .split = ClassSplit::part(part, {0.5, 0.25, 0.25}, 9)}, 0);
    total += s.languages().size();
    seen.insert(s.languages().begin(), s.languages().end());
    const std::set<std::string> mine(s.languages().begin(), s.languages().end());
    for (const std::string& lang : s.task(0).class_names) CHECK(mine.count(lang) == 1);
  }
  CHECK(total == 16);
  CHECK(seen.size() == 16);
}

TEST_CASE("words: file handling and errors (synthetic)") {
  TempDir tmp;
  const fs::path root = tmp.path() / "words";
  write_text(root / "xx.txt", "\xEF\xBB\xBFone\r\ntwo\r\n\r\n  three \nTWO\ntwo\nfour");
  write_text(root / "yy.txt", "a\nb\nc\nd\n");
  write_text(root / "notes.md", "ignored");
  WordsDataset ds(root);
  CHECK(ds.languages() == std::vector<std::string>{"xx", "yy"});
  CHECK(ds.words(0) == std::vector<std::string>{"one", "two", "three", "TWO", "four"});

  CHECK_MG_ERROR(WordsSampler(ds, {.ways = 3}), "words sampler", "only 2 languages", "3-way");
  CHECK_MG_ERROR(WordsSampler(ds, {.ways = 2, .shots = 2, .queries = 3}), "yy.txt", "4 distinct words",
                 "shots + queries = 5");
  const WordsSampler ok(ds, {.ways = 2, .shots = 1, .queries = 3, .length = 8});
  const Task t = ok.task(0);
  CHECK(t.support_x.shape() == Shape{2, 8});
  CHECK(t.query_x.shape() == Shape{6, 8});

  write_text(tmp.path() / "empty" / "zz.txt", "\n\n  \n");
  CHECK_MG_ERROR(WordsDataset(tmp.path() / "empty"), "zz.txt", "no words");
  fs::create_directories(tmp.path() / "none");
  CHECK_MG_ERROR(WordsDataset(tmp.path() / "none"), "none", "no <language>.txt files");
  CHECK_MG_ERROR(WordsDataset(tmp.path() / "missing"), "missing", "does not exist");
  write_text(tmp.path() / "nul" / "nn.txt", std::string("ok\nb\0d\n", 7));
  CHECK_MG_ERROR(WordsDataset(tmp.path() / "nul"), "line 2", "nn.txt", "zero byte");
}

}  // namespace
