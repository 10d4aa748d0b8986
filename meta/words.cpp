#include "words.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <set>
#include <system_error>
#include <utility>

#include "../autograd/ops.h"

namespace mg::meta {

namespace fs = std::filesystem;

namespace {

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string> read_words(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  MG_CHECK(in.good(), "words: cannot open '", file.string(), "'");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  MG_CHECK(!in.bad(), "words: error while reading '", file.string(), "'");
  std::string_view rest(text);
  if (rest.starts_with("\xEF\xBB\xBF")) rest.remove_prefix(3);
  std::vector<std::string> words;
  std::set<std::string_view> seen;
  int64_t line = 0;
  while (!rest.empty()) {
    ++line;
    const std::size_t end = rest.find('\n');
    const std::string_view word = trim(rest.substr(0, end));
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    if (word.empty()) continue;
    MG_CHECK(word.find('\0') == std::string_view::npos, "words: line ", line, " of '", file.string(),
             "' contains a zero byte, which is the padding token");
    if (seen.insert(word).second) words.emplace_back(word);
  }
  MG_CHECK(!words.empty(), "words: '", file.string(), "' has no words (empty, or only blank lines)");
  return words;
}

}  // namespace

std::vector<int64_t> encode_word(std::string_view word, int64_t length) {
  MG_CHECK(length > 0, "encode_word: length must be positive, got ", length);
  std::vector<int64_t> out(static_cast<std::size_t>(length), kPadToken);
  const std::size_t n = std::min(word.size(), static_cast<std::size_t>(length));
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<unsigned char>(word[i]);
  return out;
}

Tensor encode_words(const std::vector<std::string>& words, int64_t length) {
  MG_CHECK(length > 0, "encode_words: length must be positive, got ", length);
  std::vector<int64_t> tokens;
  tokens.reserve(words.size() * static_cast<std::size_t>(length));
  for (const std::string& w : words) {
    const std::vector<int64_t> row = encode_word(w, length);
    tokens.insert(tokens.end(), row.begin(), row.end());
  }
  return tensor(tokens, {static_cast<int64_t>(words.size()), length});
}

std::string decode_word(const std::vector<int64_t>& tokens) {
  std::string out;
  for (int64_t t : tokens) {
    MG_CHECK(t >= 0 && t < kByteVocabulary, "decode_word: token ", t, " is not a byte (0..255)");
    if (t != kPadToken) out.push_back(static_cast<char>(static_cast<unsigned char>(t)));
  }
  return out;
}

Tensor padding_mask(const Tensor& tokens, DType dtype) {
  MG_CHECK(tokens.defined() && tokens.dtype() == kInt64, "padding_mask: tokens must be int64, got ",
           tokens.defined() ? describe(tokens) : std::string("an undefined tensor"));
  return eq(tokens, scalar(static_cast<double>(kPadToken), kInt64, tokens.device())).to(dtype);
}

WordsDataset::WordsDataset(const fs::path& root) : root_(root) {
  std::error_code ec;
  MG_CHECK(fs::exists(root_, ec), "words: folder '", root_.string(), "' does not exist");
  MG_CHECK(fs::is_directory(root_, ec), "words: '", root_.string(), "' is not a folder");
  fs::directory_iterator it(root_, ec);
  MG_CHECK(!ec, "words: cannot list folder '", root_.string(), "': ", ec.message());
  for (const fs::directory_entry& entry : it) {
    std::error_code type_ec;
    const std::string name = entry.path().filename().string();
    if (!name.empty() && name[0] != '.' && entry.path().extension() == ".txt" && entry.is_regular_file(type_ec))
      files_.push_back(entry.path());
  }
  MG_CHECK(!files_.empty(), "words: folder '", root_.string(), "' has no <language>.txt files");
  std::sort(files_.begin(), files_.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  for (const fs::path& file : files_) {
    languages_.push_back(file.stem().string());
    words_.push_back(read_words(file));
  }
}

const std::vector<std::string>& WordsDataset::words(int64_t language) const {
  MG_CHECK(language >= 0 && language < static_cast<int64_t>(languages_.size()), "words: language ", language,
           " is out of range (", languages_.size(), " languages)");
  return words_[static_cast<std::size_t>(language)];
}

const fs::path& WordsDataset::file(int64_t language) const {
  MG_CHECK(language >= 0 && language < static_cast<int64_t>(languages_.size()), "words: language ", language,
           " is out of range (", languages_.size(), " languages)");
  return files_[static_cast<std::size_t>(language)];
}

WordsSampler::WordsSampler(const WordsDataset& dataset, WordsTaskOptions options, uint64_t seed)
    : TaskSampler(seed), options_(std::move(options)) {
  const WordsTaskOptions& o = options_;
  MG_CHECK(o.ways >= 1 && o.shots >= 1 && o.queries >= 0, "words sampler: need ways >= 1, shots >= 1, queries >= 0; got ",
           o.ways, "-way ", o.shots, "-shot with ", o.queries, " queries");
  MG_CHECK(o.length > 0, "words sampler: length must be positive, got ", o.length);
  const std::string where = "'" + dataset.root().string() + "'";
  languages_ = o.split.select(dataset.languages(), "languages under " + where);
  MG_CHECK(static_cast<int64_t>(languages_.size()) >= o.ways, "words sampler: only ", languages_.size(),
           " languages for ", o.ways, "-way tasks (split ", o.split.describe(), ") from ", where);
  for (const std::string& lang : languages_) {
    const auto index = std::find(dataset.languages().begin(), dataset.languages().end(), lang) -
                       dataset.languages().begin();
    const std::vector<std::string>& words = dataset.words(index);
    MG_CHECK(static_cast<int64_t>(words.size()) >= o.shots + o.queries, "words sampler: '",
             dataset.file(index).string(), "' has ", words.size(), " distinct words, fewer than shots + queries = ",
             o.shots + o.queries);
    words_.push_back(words);
  }
}

Task WordsSampler::sample(Generator& gen) const {
  const WordsTaskOptions& o = options_;
  const std::vector<int64_t> picked = sample_indices(static_cast<int64_t>(languages_.size()), o.ways, gen);
  std::vector<std::string> support, query;
  std::vector<int64_t> support_y, query_y;
  Task task;
  for (int64_t label = 0; label < o.ways; ++label) {
    const auto lang = static_cast<std::size_t>(picked[static_cast<std::size_t>(label)]);
    const std::vector<std::string>& words = words_[lang];
    const std::vector<int64_t> drawn = sample_indices(static_cast<int64_t>(words.size()), o.shots + o.queries, gen);
    for (int64_t s = 0; s < o.shots; ++s) {
      support.push_back(words[static_cast<std::size_t>(drawn[static_cast<std::size_t>(s)])]);
      support_y.push_back(label);
    }
    for (int64_t q = 0; q < o.queries; ++q) {
      query.push_back(words[static_cast<std::size_t>(drawn[static_cast<std::size_t>(o.shots + q)])]);
      query_y.push_back(label);
    }
    task.class_names.push_back(languages_[lang]);
  }
  task.support_x = encode_words(support, o.length);
  task.support_y = tensor(support_y, {o.ways * o.shots});
  task.query_x = encode_words(query, o.length);
  task.query_y = tensor(query_y, {o.ways * o.queries});
  return task;
}

}  // namespace mg::meta
