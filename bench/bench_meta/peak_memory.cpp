// Peak memory of a meta-step, measured the same way for both libraries (the method is described
// at the top of bench/bench_meta.cpp): one fresh process per variant, so that no measurement
// inherits another's heap, caches or thread pools. The child is this binary itself, started with
// posix_spawn rather than fork, since forking a process whose OpenMP pool is running is unsafe.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "workloads.h"

extern char** environ;

namespace mg_bench {
namespace {

constexpr int kSteps = 3;
constexpr const char* kResultTag = "peak-one:";

// A "Vm...:   1234 kB" line of /proc/self/status, in bytes; -1 when absent.
int64_t proc_status_bytes(const std::string& key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::istringstream fields(line.substr(key.size() + 1));
    int64_t kib = -1;
    fields >> kib;
    return kib < 0 ? -1 : kib * 1024;
  }
  return -1;
}

// Restarts VmHWM from the current RSS (Linux >= 4.0), so that the peak counts only what the
// meta-steps touch, not the transient peak of building the workload.
bool reset_rss_peak() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

struct Row {
  std::string name;
  double rss_mib = -1;
  double tensor_mib = -1;  // metagrad only
  std::string error;
};

Row measure_in_child(const std::string& self, const std::string& name) {
  Row row;
  row.name = name;
  int fds[2];
  if (pipe(fds) != 0) {
    row.error = "pipe failed";
    return row;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  std::vector<std::string> args{self, "--peak-one", name};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, self.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    row.error = std::string("posix_spawn: ") + std::strerror(rc);
    return row;
  }
  std::string output;
  char buffer[4096];
  for (ssize_t n; (n = read(fds[0], buffer, sizeof buffer)) > 0;) output.append(buffer, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  const std::size_t at = output.rfind(kResultTag);
  if (at == std::string::npos || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    row.error = "child failed: " + output.substr(0, 200);
    return row;
  }
  std::istringstream fields(output.substr(at + std::strlen(kResultTag)));
  fields >> row.rss_mib >> row.tensor_mib;
  return row;
}

}  // namespace

int run_peak_one(const std::string& name) {
  const Variant* variant = find_variant(name);
  if (!variant) {
    std::cerr << "bench_meta: unknown variant '" << name << "'\n";
    return 2;
  }
  configure_threads();
  std::unique_ptr<MetaStep> step = make_step(*variant);
  const int64_t baseline = proc_status_bytes("VmRSS");
  const bool reset = reset_rss_peak();
  mg::reset_peak_memory_stats();
  const int64_t tensors_before = mg::memory_stats().allocated;
  for (int i = 0; i < kSteps; ++i) step->run();
  const int64_t peak = proc_status_bytes("VmHWM");
  const int64_t tensor_peak = mg::memory_stats().peak_allocated - tensors_before;
  if (!reset) std::cerr << "bench_meta: could not reset VmHWM; the peak includes building the workload\n";
  constexpr double kMiB = 1024.0 * 1024.0;
  std::cout << kResultTag << " " << static_cast<double>(peak - baseline) / kMiB << " "
            << (variant->library == Library::Mg ? static_cast<double>(tensor_peak) / kMiB : -1.0) << std::endl;
  return 0;
}

int run_peak_memory_table() {
  const std::string self = "/proc/self/exe";
  std::vector<Row> rows;
  for (const auto& v : variants()) {
    rows.push_back(measure_in_child(self, v.name));
    std::cerr << "." << std::flush;
  }
  std::cerr << "\n";
  std::printf("Peak memory of %d meta-steps after building the workload, one process per row (%d threads)\n", kSteps,
              configure_threads());
  std::printf("%-8s %-8s %-8s %22s %24s\n", "workload", "library", "variant", "peak RSS growth MiB",
              "metagrad tensor peak MiB");
  int failures = 0;
  for (const Row& row : rows) {
    const Variant& v = *find_variant(row.name);
    const char* library = v.library == Library::Mg ? "mg" : "torch";
    const char* path = path_name(v.path);
    if (!row.error.empty()) {
      std::printf("%-8s %-8s %-8s  error: %s\n", workload_spec(v.workload).name, library, path, row.error.c_str());
      ++failures;
      continue;
    }
    char tensor[32] = "-";
    if (row.tensor_mib >= 0) std::snprintf(tensor, sizeof tensor, "%.1f", row.tensor_mib);
    std::printf("%-8s %-8s %-8s %22.1f %24s\n", workload_spec(v.workload).name, library, path, row.rss_mib, tensor);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace mg_bench
