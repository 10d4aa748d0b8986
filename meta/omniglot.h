#pragma once
// N-way K-shot classification on Omniglot-layout image folders, <root>/<alphabet>/<character>/*.png
// (Lake et al. 2015; the official images_background / images_evaluation folders unchanged), as in
// the MAML paper: images shrunk to 28x28, and each character under each of the rotations by 0, 90,
// 180 and 270 degrees counted as a class of its own.
//
// Preprocessing, fixed and explicit:
//   - decoding by libpng to 8-bit gray (the files are 1-bit: 0 = ink, 255 = paper);
//   - resize 105x105 -> image_size x image_size by area averaging (resize_area in png_image.h), a box
//     filter rather than the Lanczos of the MAML reference code: no ringing, and every output pixel
//     is exactly the ink coverage of its area;
//   - values in [0, 1] with ink = 1 and paper = 0 by default, as the MAML reference code has it
//     after its `1 - image` (torchvision-based loaders keep paper = 1; set ink_is_one = false for
//     that);
//   - rotations counterclockwise (numpy.rot90's and tf.image.rot90's sense), applied to the resized
//     image: the box filter is mirror-symmetric, so this equals resizing the rotated original.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "class_split.h"
#include "task.h"

namespace mg::meta {

struct OmniglotOptions {
  int64_t image_size = 28;  // side of the square images the dataset serves
  bool ink_is_one = true;   // ink = 1, paper = 0 (false: ink = 0, paper = 1)
};

// The folder(s), enumerated once in sorted (byte-wise) order, with images decoded on first use
// and kept in memory, a whole character at a time (floats at 28x28: 15 MB for the 4,840-image
// subset, 100 MB for all 32,460 images). Thread-safe; share one between samplers through a
// shared_ptr so that train, val and test samplers decode each image once.
class OmniglotDataset {
 public:
  struct Character {
    std::string name;  // "<alphabet>/<character>", e.g. "Greek/character07"
    int64_t alphabet = 0;  // index into alphabets()
    std::vector<std::filesystem::path> files;  // *.png, sorted
  };

  // Several roots (images_background and images_evaluation, say) act as one; an alphabet name
  // found under two roots throws. Throws mg::Error on a missing root, a root without alphabet
  // folders, an alphabet folder without character folders, or a character folder without PNGs.
  explicit OmniglotDataset(const std::filesystem::path& root, OmniglotOptions options = {});
  explicit OmniglotDataset(const std::vector<std::filesystem::path>& roots, OmniglotOptions options = {});

  OmniglotDataset(const OmniglotDataset&) = delete;
  OmniglotDataset& operator=(const OmniglotDataset&) = delete;

  const std::vector<std::string>& alphabets() const { return alphabets_; }
  const std::vector<Character>& characters() const { return characters_; }
  std::vector<std::string> character_names() const;
  int64_t image_size() const { return options_.image_size; }
  const OmniglotOptions& options() const { return options_; }
  std::string describe_roots() const;  // the roots, for messages

  // Image `index` of a character, turned by quarter_turns * 90 degrees counterclockwise:
  // [1, S, S] float32 in [0, 1].
  Tensor image(int64_t character, int64_t index, int64_t quarter_turns = 0) const;
  // The cached S*S pixels of one image (decoding the character's images on first use); valid as
  // long as the dataset lives.
  const float* pixels(int64_t character, int64_t index) const;
  // Decodes every image now, so that a bad file shows up before training rather than during it.
  void preload() const;

 private:
  void decode_character(int64_t character) const;

  std::vector<std::filesystem::path> roots_;
  OmniglotOptions options_;
  std::vector<std::string> alphabets_;
  std::vector<Character> characters_;
  mutable std::mutex mutex_;
  mutable std::vector<std::vector<float>> cache_;  // per character: files.size() * S * S, empty until decoded
};

// What a split's names refer to: alphabets (tasks never see a test alphabet during training: the
// harder, "new alphabets" setting) or characters "<alphabet>/<character>" (MAML's setting).
enum class SplitLevel { Alphabet, Character };

struct OmniglotTaskOptions {
  int64_t ways = 5;      // N classes per task
  int64_t shots = 1;     // K support images per class
  int64_t queries = 15;  // Q query images per class
  bool rotations = true;  // each character x {0, 90, 180, 270} is a class; false: characters only
  // All N classes of a task from one alphabet (picked uniformly among the alphabets of the split
  // that have at least N classes), instead of from the whole split.
  bool within_alphabet = false;
  SplitLevel split_level = SplitLevel::Character;
  ClassSplit split = ClassSplit::all();
  DType dtype = kFloat32;  // of the images: float32 or float64
};

// Tasks: support_x [N*K, 1, S, S], support_y [N*K] int64, query_x [N*Q, 1, S, S], query_y [N*Q],
// grouped by label (rows 0..K-1 are label 0, ...). Labels 0..N-1 go to the N classes in the random
// order they were drawn, so a label means nothing across tasks. The K + Q images of a class are
// distinct drawings. class_names[label] is "<alphabet>/<character>/rot<degrees>".
class OmniglotSampler : public TaskSampler {
 public:
  // Throws when the split leaves fewer classes than ways (or no alphabet with that many, within
  // alphabets), or a character has fewer than shots + queries images.
  OmniglotSampler(std::shared_ptr<const OmniglotDataset> dataset, OmniglotTaskOptions options, uint64_t seed = 0);

  Task sample(Generator& gen) const override;

  int64_t num_classes() const { return static_cast<int64_t>(classes_.size()); }
  std::string class_name(int64_t cls) const;
  const std::vector<int64_t>& characters() const { return characters_; }  // of the split, indices into the dataset
  const OmniglotTaskOptions& options() const { return options_; }
  const OmniglotDataset& dataset() const { return *dataset_; }

 private:
  struct Class {
    int64_t character;
    int64_t quarter_turns;
  };

  std::shared_ptr<const OmniglotDataset> dataset_;
  OmniglotTaskOptions options_;
  std::vector<int64_t> characters_;
  std::vector<Class> classes_;
  std::vector<std::vector<int64_t>> alphabet_classes_;  // within_alphabet: class ids per eligible alphabet
};

// Turns the last two dims of an image tensor by quarter_turns * 90 degrees counterclockwise, as
// numpy.rot90(x, k, axes=(-2, -1)); a copy. [..., H, W] -> [..., W, H] for odd turns.
Tensor rot90(const Tensor& images, int64_t quarter_turns = 1);

}  // namespace mg::meta
