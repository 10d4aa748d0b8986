#pragma once
// N-way K-shot language identification of single words, for the transformer: the classes are
// languages (one <root>/<lang>.txt each, one word per line, UTF-8) and a word is the sequence of
// its UTF-8 bytes.
//
// Tokens: token = byte value, so the vocabulary is 256 and UTF-8 text (which never contains a zero
// byte) uses ids 1..255, leaving 0 free as the padding id: no shift, and a token sequence is the
// word's bytes as they are. Words are padded with 0 or cut to a fixed length (16 by default) at a
// byte boundary, which may split a multi-byte character; a model of bytes does not mind.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "class_split.h"
#include "task.h"

namespace mg::meta {

inline constexpr int64_t kByteVocabulary = 256;
inline constexpr int64_t kPadToken = 0;

// The bytes of word, cut or padded with kPadToken to length.
std::vector<int64_t> encode_word(std::string_view word, int64_t length);
// int64 [words.size(), length].
Tensor encode_words(const std::vector<std::string>& words, int64_t length);
// The word back from a row of tokens (padding dropped).
std::string decode_word(const std::vector<int64_t>& tokens);
// 1 where tokens == kPadToken, else 0, in dtype (the library has no bool type; attention masks
// take any dtype and read nonzero as "masked").
Tensor padding_mask(const Tensor& tokens, DType dtype = kInt64);

// The word lists, read once: languages sorted by file name (the stem of <lang>.txt), words in file
// order with surrounding whitespace (and a UTF-8 byte-order mark, and the \r of CRLF files)
// removed, empty lines skipped and repeats dropped (a repeat would let a query be a support
// word). Throws mg::Error on a missing folder, a folder without .txt files, a file without words,
// or a word containing a zero byte.
class WordsDataset {
 public:
  explicit WordsDataset(const std::filesystem::path& root);

  const std::filesystem::path& root() const { return root_; }
  const std::vector<std::string>& languages() const { return languages_; }
  const std::vector<std::string>& words(int64_t language) const;
  const std::filesystem::path& file(int64_t language) const;

 private:
  std::filesystem::path root_;
  std::vector<std::string> languages_;
  std::vector<std::filesystem::path> files_;
  std::vector<std::vector<std::string>> words_;
};

struct WordsTaskOptions {
  int64_t ways = 5;      // N languages per task
  int64_t shots = 1;     // K support words per language
  int64_t queries = 15;  // Q query words per language
  int64_t length = 16;   // tokens per word
  ClassSplit split = ClassSplit::all();  // over language names ("bg", "de", ...)
};

// Tasks: support_x int64 [N*K, length], support_y int64 [N*K], query_x [N*Q, length],
// query_y [N*Q], grouped by label; labels 0..N-1 go to the N languages in the random order they
// were drawn, and the K + Q words of a language are distinct. class_names[label] is the language.
class WordsSampler : public TaskSampler {
 public:
  // Throws when the split leaves fewer languages than ways or a language has fewer than
  // shots + queries words.
  WordsSampler(const WordsDataset& dataset, WordsTaskOptions options, uint64_t seed = 0);

  Task sample(Generator& gen) const override;

  const std::vector<std::string>& languages() const { return languages_; }  // of the split
  const WordsTaskOptions& options() const { return options_; }

 private:
  WordsTaskOptions options_;
  std::vector<std::string> languages_;
  std::vector<std::vector<std::string>> words_;  // per language of the split
};

}  // namespace mg::meta
