// Prototypical Networks (Snell, Swersky and Zemel 2017) on Omniglot: a Conv4 embedding trained so
// that a query lands nearest the mean embedding (prototype) of its class's support images. There
// is no inner loop; a new task is solved by embedding its support set once.
//   protonet_omniglot [images_background folder] [iterations] [test tasks]
// The folder defaults to $MG_TEST_DATA_DIR/omniglot/images_background. The defaults are a smoke
// test; Snell et al. train for tens of thousands of iterations and test on 600 tasks or more.
#include <metagrad/metagrad.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

using namespace mg;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  const char* env = std::getenv("MG_TEST_DATA_DIR");
  const fs::path root = argc > 1 ? fs::path(argv[1])
                        : env    ? fs::path(env) / "omniglot" / "images_background"
                                 : fs::path();
  if (root.empty() || !fs::is_directory(root)) {
    std::printf("skipped: no Omniglot folder at '%s' (pass one, or set MG_TEST_DATA_DIR)\n", root.c_str());
    return 77;
  }
  const int64_t iterations = argc > 2 ? std::atoll(argv[2]) : 6;
  const int test_tasks_n = argc > 3 ? std::max(2, std::atoi(argv[3])) : 15;

  auto data = std::make_shared<const meta::OmniglotDataset>(root);
  // Split by character: test characters (each under 4 rotations, 4 classes) are never seen in
  // training, so the accuracy below measures learning new classes from one example each.
  const meta::SplitFractions fractions{.train = 0.8, .val = 0.1, .test = 0.1};
  const auto part = [&](meta::SplitPart p) { return meta::ClassSplit::part(p, fractions, /*seed=*/0); };
  // More ways in training than in testing makes the embedding separate classes harder (Snell et
  // al. train 1-shot with 60 ways and 5 queries, test with 15); ours are sized for a short run.
  const int64_t train_ways = 10;
  meta::OmniglotSampler train_tasks(
      data, {.ways = train_ways, .shots = 1, .queries = 2, .split = part(meta::SplitPart::Train)}, /*seed=*/1);
  meta::OmniglotSampler test_tasks(data, {.ways = 5, .shots = 1, .queries = 5, .split = part(meta::SplitPart::Test)},
                                   /*seed=*/2);
  std::printf("%lld training classes, %lld test classes\n", static_cast<long long>(train_tasks.num_classes()),
              static_cast<long long>(test_tasks.num_classes()));

  Generator init(0);
  // No head: the network's output is the embedding. 32 channels rather than the paper's 64 cost a
  // quarter of the arithmetic.
  meta::Conv4 model({.hidden = 32, .ways = 0}, &init);
  nn::Adam adam(model.parameters(), {.lr = 1e-3});
  for (int64_t it = 1; it <= iterations; ++it) {
    adam.zero_grad();
    // The loss is a cross-entropy over negative distances to the prototypes, and the prototypes
    // are themselves embeddings: its gradient trains the network through both.
    const meta::Task task = train_tasks.next();
    const meta::ProtoOutput out = meta::protonet_loss(model, nn::Params(model), task, train_ways);
    out.loss.backward();
    adam.step();
    const double loss = out.loss.item();
    if (!std::isfinite(loss)) {
      std::printf("iteration %lld: loss is %f\n", static_cast<long long>(it), loss);
      return 1;
    }
    if (it % std::max<int64_t>(iterations / 5, 1) == 0)
      std::printf("iteration %4lld  %lld-way loss %.3f  accuracy %.1f%%\n", static_cast<long long>(it),
                  static_cast<long long>(train_ways), loss, 100.0 * nn::accuracy(out.logits, task.query_y));
  }

  // Held-out tasks: 5 new classes, one support image each.
  const int n = test_tasks_n;
  std::vector<double> acc;
  NoGradGuard no_grad;
  for (int i = 0; i < n; ++i) {
    const meta::Task task = test_tasks.task(i);
    acc.push_back(nn::accuracy(meta::protonet_loss(model, nn::Params(model), task, 5).logits, task.query_y));
  }
  double mean = 0, sq = 0;
  for (double a : acc) mean += a / n, sq += a * a;
  const double ci95 = 1.96 * std::sqrt(std::max(sq - n * mean * mean, 0.0) / (n - 1) / n);
  std::printf("held-out 5-way 1-shot accuracy: %.1f%% +- %.1f%% (%d tasks)\n", 100 * mean, 100 * ci95, n);
  // Even an untrained embedding beats guessing; failing to is a bug, not a short run.
  if (!(mean > 0.2)) {
    std::printf("FAILED: accuracy at or below chance (20%%)\n");
    return 1;
  }
}
