#pragma once
// The program's commands; each takes the arguments after its name and returns the exit status.
#include <string>
#include <vector>

namespace mg::app {

int train_command(const std::vector<std::string>& args);
int eval_command(const std::vector<std::string>& args);
int info_command(const std::vector<std::string>& args);
int grad_check_command(const std::vector<std::string>& args);
int plot_command(const std::vector<std::string>& args);

// Exit statuses: 0 success, 1 a failed check or run error, 2 bad usage or input, 130 interrupted.
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitInterrupted = 130;

}  // namespace mg::app
