// The metagrad program as a user meets it: every bad input ends with one clear message and a
// non-zero exit (never a crash), a resumed run equals an uninterrupted one bit for bit, and
// Ctrl-C leaves a checkpoint that resumes.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "../nn/safetensors.h"
#include "../tensor/build_info.h"

namespace fs = std::filesystem;
using namespace mg;

namespace {

struct Result {
  int status = -1;     // exit status; 128 + signal when killed by one
  std::string output;  // stdout and stderr
};

std::string quote(const std::string& s) { return "'" + s + "'"; }

Result run(const std::string& args) {
  const std::string command = quote(MG_APP_PATH) + " " + args + " 2>&1";
  Result r;
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  std::size_t n = 0;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) r.output.append(buffer, n);
  const int raw = pclose(pipe);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + (WIFSIGNALED(raw) ? WTERMSIG(raw) : 0);
  return r;
}

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("mg_app_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

fs::path data_dir() {
  const char* env = std::getenv("MG_TEST_DATA_DIR");
  return env ? fs::path(env) : fs::path("../shared/data");
}

// A tiny, fast sinusoid configuration for runs inside tests.
const std::string kTiny = " --hidden 8 --meta-batch 2 --eval-tasks 4 --test-tasks 4 --log-interval 0 ";

void check_failure(const Result& r, const std::string& expected) {
  INFO("output: " << r.output);
  CHECK(r.status == 2);
  CHECK(r.output.find(expected) != std::string::npos);
  CHECK(r.output.find("error: ") != std::string::npos);
}

// A copy of some Omniglot characters: alphabets x characters x images.
fs::path omniglot_copy(const std::string& name, int alphabets, int characters, int images) {
  const fs::path source = data_dir() / "omniglot" / "images_background";
  const fs::path dest = scratch(name);
  int a = 0;
  std::vector<fs::path> alphabet_dirs;
  for (const auto& e : fs::directory_iterator(source))
    if (e.is_directory()) alphabet_dirs.push_back(e.path());
  std::sort(alphabet_dirs.begin(), alphabet_dirs.end());
  for (const fs::path& alphabet : alphabet_dirs) {
    if (a++ == alphabets) break;
    std::vector<fs::path> chars;
    for (const auto& e : fs::directory_iterator(alphabet)) chars.push_back(e.path());
    std::sort(chars.begin(), chars.end());
    for (int c = 0; c < characters && c < static_cast<int>(chars.size()); ++c) {
      const fs::path out = dest / alphabet.filename() / chars[static_cast<std::size_t>(c)].filename();
      fs::create_directories(out);
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(chars[static_cast<std::size_t>(c)])) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (int i = 0; i < images && i < static_cast<int>(files.size()); ++i)
        fs::copy_file(files[static_cast<std::size_t>(i)], out / files[static_cast<std::size_t>(i)].filename());
    }
  }
  return dest;
}

bool have_omniglot() {
  if (fs::is_directory(data_dir() / "omniglot" / "images_background")) return true;
  MESSAGE("skipped: no Omniglot data under ", data_dir().string());
  return false;
}

}  // namespace

TEST_SUITE("app") {
  TEST_CASE("usage errors: unknown command, flag, task, algorithm, bad numbers") {
    check_failure(run("bogus"), "unknown command 'bogus'");
    check_failure(run("train --iteratons 5"), "unknown flag --iteratons (did you mean --iterations?)");
    check_failure(run("train --task images"), "unknown task 'images'");
    check_failure(run("train --algo mamll"), "unknown algorithm 'mamll'");
    check_failure(run("train --iterations ten"), "--iterations expects an integer, got 'ten'");
    check_failure(run("train --iterations"), "--iterations needs a value");
    check_failure(run("train --ways 0"), "--ways must be at least 1");
    check_failure(run("train --task sinusoid --model conv4"), "--task sinusoid needs --model mlp");
    check_failure(run("train --task omniglot"), "--task omniglot needs --data PATH");
    check_failure(run("train stray"), "unexpected argument 'stray'");
    check_failure(run("train --task-batched --tasks-looped"), "--task-batched and --tasks-looped contradict");
    check_failure(run("eval"), "--checkpoint FILE is required");
    check_failure(run("train --device-graph"), "--device-graph records CUDA work; it needs --device cuda");
    check_failure(run("train --device tpu"), "tpu");
    if (build_info().cuda_devices == 0) check_failure(run("train --device cuda --iterations 1" + kTiny), "cuda:0");
    const Result help = run("train --help");
    CHECK(help.status == 0);
    CHECK(help.output.find("--inner-steps") != std::string::npos);
  }

  TEST_CASE("data errors: missing or empty folder, too few classes, corrupt PNG") {
    const fs::path empty = scratch("empty");
    check_failure(run("train --task omniglot --data /nonexistent/omniglot"), "does not exist");
    check_failure(run("train --task words --data /nonexistent/words"), "does not exist");
    check_failure(run("train --task omniglot --data " + quote(empty.string())), empty.string());
    check_failure(run("train --task words --data " + quote(empty.string())), empty.string());
    if (!have_omniglot()) return;
    // 1 alphabet x 3 characters without rotations: 3 classes, fewer than 5 ways.
    const fs::path few = omniglot_copy("few", 1, 3, 20);
    check_failure(run("train --task omniglot --no-rotations --split all --data " + quote(few.string())), "5-way");
    const fs::path corrupt = omniglot_copy("corrupt", 1, 2, 3);
    fs::path victim;
    for (const auto& e : fs::recursive_directory_iterator(corrupt))
      if (e.path().extension() == ".png") victim = e.path();
    std::ofstream(victim, std::ios::trunc) << "this is not a PNG";
    check_failure(run("train --task omniglot --split all --ways 2 --data " + quote(corrupt.string())),
                  victim.filename().string());
  }

  TEST_CASE("a checkpoint from another model is refused by eval and by resume") {
    const fs::path dir = scratch("mismatch");
    const Result trained = run("train --iterations 3" + kTiny + "--out " + quote(dir.string()));
    REQUIRE_MESSAGE(trained.status == 0, trained.output);
    const std::string ckpt = quote((dir / "last.safetensors").string());
    const Result ok = run("eval --checkpoint " + ckpt + " --eval-tasks 5");
    INFO(ok.output);
    CHECK(ok.status == 0);
    CHECK(ok.output.find("+-") != std::string::npos);
    check_failure(run("eval --checkpoint " + ckpt + " --hidden 16"),
                  "model mismatch: body.0.weight is [8,1] in the checkpoint but [16,1] here");
    check_failure(run("train --resume --iterations 6 --hidden 16 --meta-batch 2 --out " + quote(dir.string())),
                  "model mismatch");
    const fs::path garbage = dir / "garbage.safetensors";
    std::ofstream(garbage) << "not a checkpoint";
    check_failure(run("eval --checkpoint " + quote(garbage.string())), "garbage.safetensors");
    check_failure(run("eval --checkpoint " + quote((dir / "missing.safetensors").string())), "missing.safetensors");
  }

  TEST_CASE("200 iterations equal 100, resume, 100 more: bit for bit") {
    const fs::path a = scratch("straight"), b = scratch("halves");
    const Result straight = run("train --iterations 200 --eval-interval 50" + kTiny + "--out " + quote(a.string()));
    REQUIRE_MESSAGE(straight.status == 0, straight.output);
    const Result first = run("train --iterations 100 --eval-interval 50" + kTiny + "--out " + quote(b.string()));
    REQUIRE_MESSAGE(first.status == 0, first.output);
    const Result second =
        run("train --resume --iterations 200 --eval-interval 50" + kTiny + "--out " + quote(b.string()));
    REQUIRE_MESSAGE(second.status == 0, second.output);
    const nn::SafetensorsFile x = nn::load_safetensors((a / "last.safetensors").string());
    const nn::SafetensorsFile y = nn::load_safetensors((b / "last.safetensors").string());
    CHECK(x.tensors.size() == y.tensors.size());
    int64_t compared = 0;
    for (const auto& [name, t] : x.tensors) {
      CAPTURE(name);
      REQUIRE(y.tensors.contains(name));
      if (t.dtype() == kInt64)
        CHECK(t.to_vector<int64_t>() == y.tensors.at(name).to_vector<int64_t>());
      else
        CHECK(t.to_vector<float>() == y.tensors.at(name).to_vector<float>());
      ++compared;
    }
    CHECK(compared > 6);  // weights and Adam moments
    CHECK(x.metadata.at("trainer.step") == "200");
    // One metrics row per iteration, none repeated.
    std::ifstream csv(b / "metrics.csv");
    std::string line;
    int rows = 0;
    std::getline(csv, line);
    while (std::getline(csv, line)) ++rows;
    CHECK(rows == 200);
    CHECK(fs::exists(b / "learning_curve.svg"));
    const Result plot = run("plot --metrics " + quote((b / "metrics.csv").string()) + " --out " +
                            quote((b / "again.svg").string()) + " --title halves");
    CHECK(plot.status == 0);
    std::ifstream svg(b / "again.svg");
    const std::string picture((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
    CHECK(picture.rfind("<svg", 0) == 0);
    CHECK(picture.find("halves") != std::string::npos);
    CHECK(picture.find("<polyline") != std::string::npos);
    check_failure(run("plot --metrics " + quote((b / "nothing.csv").string())), "nothing.csv");
    std::ifstream summary(b / "summary.txt");
    const std::string text((std::istreambuf_iterator<char>(summary)), std::istreambuf_iterator<char>());
    CHECK(text.find("batchnorm none") != std::string::npos);
    CHECK(text.find("after 10 inner steps: MSE") != std::string::npos);
  }

  TEST_CASE("SIGINT stops training with its last checkpoint intact, and --resume continues") {
    const fs::path dir = scratch("sigint");
    const std::string log = (dir / "log.txt").string();
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const std::string out = dir.string();
      std::freopen(log.c_str(), "w", stdout);
      execl(MG_APP_PATH, MG_APP_PATH, "train", "--iterations", "100000000", "--eval-interval", "10", "--eval-tasks",
            "2", "--hidden", "8", "--meta-batch", "2", "--log-interval", "0", "--out", out.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!fs::exists(dir / "last.safetensors") && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    REQUIRE(fs::exists(dir / "last.safetensors"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    kill(pid, SIGINT);
    int raw = 0;
    REQUIRE(waitpid(pid, &raw, 0) == pid);
    REQUIRE(WIFEXITED(raw));
    CHECK(WEXITSTATUS(raw) == 130);
    std::ifstream in(log);
    const std::string printed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(printed.find("interrupted at iteration") != std::string::npos);
    const nn::SafetensorsFile ckpt = nn::load_safetensors((dir / "last.safetensors").string());
    const int64_t step = std::stoll(ckpt.metadata.at("trainer.step"));
    CHECK(step >= 10);
    const Result resumed = run("train --resume --iterations " + std::to_string(step + 3) +
                               " --eval-interval 10 --eval-tasks 2 --hidden 8 --meta-batch 2 --log-interval 0 "
                               "--test-tasks 2 --out " +
                               quote(dir.string()));
    INFO(resumed.output);
    CHECK(resumed.status == 0);
    CHECK(resumed.output.find("resumed at iteration " + std::to_string(step)) != std::string::npos);
  }

  TEST_CASE("info and grad-check") {
    const Result info = run("info");
    CHECK(info.status == 0);
    CHECK(info.output.find("cpu kernels") != std::string::npos);
    const Result check = run("grad-check --model transformer --entries 8");
    INFO(check.output);
    CHECK(check.status == 0);
    CHECK(check.output.find("PASS") != std::string::npos);
  }
}
