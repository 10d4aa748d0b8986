#include "omniglot.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include "../autograd/ops.h"
#include "png_image.h"

namespace mg::meta {

namespace fs = std::filesystem;

namespace {

bool hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return name.empty() || name[0] == '.';
}

// Sorted byte-wise by name, so the enumeration is the same on every file system.
std::vector<fs::path> sorted_entries(const fs::path& dir, bool want_dirs) {
  std::vector<fs::path> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  MG_CHECK(!ec, "omniglot: cannot list folder '", dir.string(), "': ", ec.message());
  for (const fs::directory_entry& entry : it) {
    if (hidden(entry.path())) continue;
    std::error_code type_ec;
    if (want_dirs) {
      if (entry.is_directory(type_ec)) out.push_back(entry.path());
    } else if (entry.is_regular_file(type_ec)) {
      std::string ext = entry.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (ext == ".png") out.push_back(entry.path());
    }
  }
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  return out;
}

// dst[i][j] = the source turned counterclockwise by quarter_turns * 90 degrees (square images).
template <typename T>
void copy_turned(const float* src, int64_t side, int64_t quarter_turns, T* dst) {
  const int64_t n = side - 1;
  for (int64_t i = 0; i < side; ++i)
    for (int64_t j = 0; j < side; ++j) {
      int64_t r = i, c = j;
      switch (quarter_turns & 3) {
        case 1: r = j, c = n - i; break;
        case 2: r = n - i, c = n - j; break;
        case 3: r = n - j, c = i; break;
        default: break;
      }
      dst[i * side + j] = static_cast<T>(src[r * side + c]);
    }
}

}  // namespace

OmniglotDataset::OmniglotDataset(const fs::path& root, OmniglotOptions options)
    : OmniglotDataset(std::vector<fs::path>{root}, options) {}

OmniglotDataset::OmniglotDataset(const std::vector<fs::path>& roots, OmniglotOptions options)
    : roots_(roots), options_(options) {
  MG_CHECK(!roots_.empty(), "omniglot: no root folder given");
  MG_CHECK(options_.image_size > 0 && options_.image_size <= 4096, "omniglot: image_size must be in 1..4096, got ",
           options_.image_size);
  std::map<std::string, fs::path> alphabet_root;  // to report an alphabet found under two roots
  for (const fs::path& root : roots_) {
    std::error_code ec;
    MG_CHECK(fs::exists(root, ec), "omniglot: folder '", root.string(), "' does not exist");
    MG_CHECK(fs::is_directory(root, ec), "omniglot: '", root.string(), "' is not a folder");
    const std::vector<fs::path> alphabet_dirs = sorted_entries(root, true);
    MG_CHECK(!alphabet_dirs.empty(), "omniglot: folder '", root.string(),
             "' has no alphabet folders (expected <root>/<alphabet>/<character>/*.png)");
    for (const fs::path& alphabet_dir : alphabet_dirs) {
      const std::string alphabet = alphabet_dir.filename().string();
      const auto [it, fresh] = alphabet_root.emplace(alphabet, root);
      MG_CHECK(fresh, "omniglot: alphabet '", alphabet, "' appears under both '", it->second.string(), "' and '",
               root.string(), "'");
      const std::vector<fs::path> character_dirs = sorted_entries(alphabet_dir, true);
      MG_CHECK(!character_dirs.empty(), "omniglot: alphabet folder '", alphabet_dir.string(),
               "' has no character folders");
      const auto alphabet_index = static_cast<int64_t>(alphabets_.size());
      alphabets_.push_back(alphabet);
      for (const fs::path& character_dir : character_dirs) {
        Character c;
        c.name = alphabet + "/" + character_dir.filename().string();
        c.alphabet = alphabet_index;
        c.files = sorted_entries(character_dir, false);
        MG_CHECK(!c.files.empty(), "omniglot: character folder '", character_dir.string(), "' has no .png files");
        characters_.push_back(std::move(c));
      }
    }
  }
  // Several roots: keep the alphabets, and so the characters, in one sorted order.
  if (roots_.size() > 1) {
    std::vector<int64_t> order(alphabets_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return alphabets_[static_cast<std::size_t>(a)] < alphabets_[static_cast<std::size_t>(b)];
    });
    std::vector<int64_t> new_index(order.size());
    std::vector<std::string> sorted_alphabets;
    for (std::size_t i = 0; i < order.size(); ++i) {
      new_index[static_cast<std::size_t>(order[i])] = static_cast<int64_t>(i);
      sorted_alphabets.push_back(alphabets_[static_cast<std::size_t>(order[i])]);
    }
    alphabets_ = std::move(sorted_alphabets);
    for (Character& c : characters_) c.alphabet = new_index[static_cast<std::size_t>(c.alphabet)];
    std::stable_sort(characters_.begin(), characters_.end(),
                     [](const Character& a, const Character& b) { return a.alphabet < b.alphabet; });
  }
  cache_.resize(characters_.size());
}

std::vector<std::string> OmniglotDataset::character_names() const {
  std::vector<std::string> out;
  out.reserve(characters_.size());
  for (const Character& c : characters_) out.push_back(c.name);
  return out;
}

std::string OmniglotDataset::describe_roots() const {
  std::ostringstream out;
  for (std::size_t i = 0; i < roots_.size(); ++i) out << (i ? ", '" : "'") << roots_[i].string() << "'";
  return out.str();
}

void OmniglotDataset::decode_character(int64_t character) const {
  const Character& c = characters_[static_cast<std::size_t>(character)];
  const int64_t side = options_.image_size;
  const std::size_t per_image = static_cast<std::size_t>(side * side);
  std::vector<float> pixels;
  pixels.reserve(c.files.size() * per_image);
  for (const fs::path& file : c.files) {
    const std::vector<float> image = resize_area(read_png_gray(file), side, side);
    // The PNGs are ink = 0, paper = 1 after scaling.
    for (float v : image) pixels.push_back(options_.ink_is_one ? 1.0f - v : v);
  }
  cache_[static_cast<std::size_t>(character)] = std::move(pixels);
}

const float* OmniglotDataset::pixels(int64_t character, int64_t index) const {
  MG_CHECK(character >= 0 && character < static_cast<int64_t>(characters_.size()), "omniglot: character ", character,
           " is out of range (", characters_.size(), " characters)");
  const Character& c = characters_[static_cast<std::size_t>(character)];
  MG_CHECK(index >= 0 && index < static_cast<int64_t>(c.files.size()), "omniglot: image ", index,
           " is out of range for '", c.name, "' (", c.files.size(), " images)");
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<float>& cached = cache_[static_cast<std::size_t>(character)];
  if (cached.empty()) decode_character(character);
  return cached.data() + static_cast<std::size_t>(index * options_.image_size * options_.image_size);
}

Tensor OmniglotDataset::image(int64_t character, int64_t index, int64_t quarter_turns) const {
  const float* src = pixels(character, index);
  const int64_t side = options_.image_size;
  Tensor out = Tensor::empty({1, side, side}, kFloat32);
  copy_turned(src, side, ((quarter_turns % 4) + 4) % 4, out.data_ptr<float>());
  return out;
}

void OmniglotDataset::preload() const {
  for (std::size_t c = 0; c < characters_.size(); ++c) pixels(static_cast<int64_t>(c), 0);
}

OmniglotSampler::OmniglotSampler(std::shared_ptr<const OmniglotDataset> dataset, OmniglotTaskOptions options,
                                 uint64_t seed)
    : TaskSampler(seed), dataset_(std::move(dataset)), options_(std::move(options)) {
  MG_CHECK(dataset_ != nullptr, "omniglot sampler: no dataset given");
  const OmniglotTaskOptions& o = options_;
  MG_CHECK(o.ways >= 1 && o.shots >= 1 && o.queries >= 0, "omniglot sampler: need ways >= 1, shots >= 1, queries >= 0; got ",
           o.ways, "-way ", o.shots, "-shot with ", o.queries, " queries");
  MG_CHECK(is_floating(o.dtype), "omniglot sampler: dtype must be float32 or float64, got ", o.dtype);
  const OmniglotDataset& ds = *dataset_;
  const std::string where = ds.describe_roots();

  if (o.split_level == SplitLevel::Alphabet) {
    const std::vector<std::string> chosen = o.split.select(ds.alphabets(), "omniglot alphabets under " + where);
    const std::set<std::string> keep(chosen.begin(), chosen.end());
    for (std::size_t c = 0; c < ds.characters().size(); ++c)
      if (keep.count(ds.alphabets()[static_cast<std::size_t>(ds.characters()[c].alphabet)]) != 0)
        characters_.push_back(static_cast<int64_t>(c));
  } else {
    const std::vector<std::string> names = ds.character_names();
    const std::vector<std::string> chosen = o.split.select(names, "omniglot characters under " + where);
    const std::set<std::string> keep(chosen.begin(), chosen.end());
    for (std::size_t c = 0; c < names.size(); ++c)
      if (keep.count(names[c]) != 0) characters_.push_back(static_cast<int64_t>(c));
  }

  const int64_t turns = o.rotations ? 4 : 1;
  for (int64_t c : characters_)
    for (int64_t t = 0; t < turns; ++t) classes_.push_back(Class{c, t});

  const std::string setting = std::to_string(o.ways) + "-way tasks (split " + o.split.describe() + ", " +
                              (o.rotations ? "with" : "without") + " rotations) from " + where;
  MG_CHECK(static_cast<int64_t>(classes_.size()) >= o.ways, "omniglot sampler: only ", classes_.size(),
           " classes for ", setting);
  const int64_t per_class = o.shots + o.queries;
  for (int64_t c : characters_) {
    const auto& ch = ds.characters()[static_cast<std::size_t>(c)];
    MG_CHECK(static_cast<int64_t>(ch.files.size()) >= per_class, "omniglot sampler: character '", ch.name, "' has ",
             ch.files.size(), " images, fewer than shots + queries = ", per_class);
  }
  if (o.within_alphabet) {
    std::map<int64_t, std::vector<int64_t>> by_alphabet;
    for (std::size_t k = 0; k < classes_.size(); ++k)
      by_alphabet[ds.characters()[static_cast<std::size_t>(classes_[k].character)].alphabet].push_back(
          static_cast<int64_t>(k));
    for (auto& [alphabet, ids] : by_alphabet)
      if (static_cast<int64_t>(ids.size()) >= o.ways) alphabet_classes_.push_back(std::move(ids));
    MG_CHECK(!alphabet_classes_.empty(), "omniglot sampler: no alphabet has ", o.ways, " classes for within-alphabet ",
             setting);
  }
}

std::string OmniglotSampler::class_name(int64_t cls) const {
  MG_CHECK(cls >= 0 && cls < num_classes(), "omniglot sampler: class ", cls, " is out of range (", num_classes(),
           " classes)");
  const Class& k = classes_[static_cast<std::size_t>(cls)];
  return dataset_->characters()[static_cast<std::size_t>(k.character)].name + "/rot" +
         std::to_string(90 * k.quarter_turns);
}

Task OmniglotSampler::sample(Generator& gen) const {
  const OmniglotTaskOptions& o = options_;
  const OmniglotDataset& ds = *dataset_;
  std::vector<int64_t> picked;
  if (o.within_alphabet) {
    const auto& group = alphabet_classes_[static_cast<std::size_t>(
        sample_indices(static_cast<int64_t>(alphabet_classes_.size()), 1, gen)[0])];
    for (int64_t i : sample_indices(static_cast<int64_t>(group.size()), o.ways, gen))
      picked.push_back(group[static_cast<std::size_t>(i)]);
  } else {
    picked = sample_indices(num_classes(), o.ways, gen);
  }

  const int64_t side = ds.image_size();
  const int64_t pixels = side * side;
  Task task;
  task.support_x = Tensor::empty({o.ways * o.shots, 1, side, side}, o.dtype);
  task.query_x = Tensor::empty({o.ways * o.queries, 1, side, side}, o.dtype);
  std::vector<int64_t> support_y, query_y;
  support_y.reserve(static_cast<std::size_t>(o.ways * o.shots));
  query_y.reserve(static_cast<std::size_t>(o.ways * o.queries));
  dispatch_floating(o.dtype, "omniglot sampler", [&]<typename T>() {
    T* sx = task.support_x.data_ptr<T>();
    T* qx = o.queries > 0 ? task.query_x.data_ptr<T>() : nullptr;
    for (int64_t label = 0; label < o.ways; ++label) {
      const Class& k = classes_[static_cast<std::size_t>(picked[static_cast<std::size_t>(label)])];
      const auto n_images = static_cast<int64_t>(ds.characters()[static_cast<std::size_t>(k.character)].files.size());
      const std::vector<int64_t> drawn = sample_indices(n_images, o.shots + o.queries, gen);
      for (int64_t s = 0; s < o.shots; ++s) {
        copy_turned(ds.pixels(k.character, drawn[static_cast<std::size_t>(s)]), side, k.quarter_turns,
                    sx + (label * o.shots + s) * pixels);
        support_y.push_back(label);
      }
      for (int64_t q = 0; q < o.queries; ++q) {
        copy_turned(ds.pixels(k.character, drawn[static_cast<std::size_t>(o.shots + q)]), side, k.quarter_turns,
                    qx + (label * o.queries + q) * pixels);
        query_y.push_back(label);
      }
      task.class_names.push_back(class_name(picked[static_cast<std::size_t>(label)]));
    }
  });
  task.support_y = tensor(support_y, {o.ways * o.shots});
  task.query_y = tensor(query_y, {o.ways * o.queries});
  return task;
}

Tensor rot90(const Tensor& images, int64_t quarter_turns) {
  MG_CHECK(images.defined() && images.dim() >= 2, "rot90: needs a tensor of at least 2 dims, got ",
           images.defined() ? describe(images) : std::string("an undefined tensor"));
  MG_CHECK(images.device().is_cpu(), "rot90: needs a cpu tensor, got ", describe(images));
  const int64_t turns = ((quarter_turns % 4) + 4) % 4;
  const Tensor src = images.contiguous();
  const int64_t h = src.size(-2), w = src.size(-1);
  Shape shape = src.shape();
  if (turns % 2 == 1) std::swap(shape[shape.size() - 2], shape[shape.size() - 1]);
  Tensor out = Tensor::empty(shape, src.dtype());
  const int64_t plane = h * w;
  const int64_t planes = plane == 0 ? 0 : src.numel() / plane;
  dispatch_dtype(src.dtype(), [&]<typename T>() {
    const T* in = src.data_ptr<T>();
    T* o = out.data_ptr<T>();
    const int64_t oh = turns % 2 ? w : h, ow = turns % 2 ? h : w;
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          int64_t r = i, c = j;
          switch (turns) {
            case 1: r = j, c = w - 1 - i; break;
            case 2: r = h - 1 - i, c = w - 1 - j; break;
            case 3: r = h - 1 - j, c = i; break;
            default: break;
          }
          o[p * plane + i * ow + j] = in[p * plane + r * w + c];
        }
  });
  return out;
}

}  // namespace mg::meta
