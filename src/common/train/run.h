// run.h — what every stage executable does before and around its training loop:
// take a RunRequest (from `--config FILE --set k=v ... [--resume | --resume-from DIR]`, validated),
// create run.dir, print the resolved config (rank 0) and write run.dir/config.yaml, check that all
// ranks agree (config hash), pick the device, find the checkpoint to resume from, and handle
// preemption signals; rank 0 holds a lock on run.dir for the life of the stage (one run per run.dir).
// Contract: start_run() is collective (every rank calls it with the same arguments).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "common/io/checkpoint.h"
#include "common/core/compat.h"
#include "common/core/fs.h"
#include "common/train/config.h"
#include "common/train/stage_spec.h"
#include "common/dist/dist.h"
#include "common/train/metrics.h"

namespace rlhf {

// Exit code after SIGTERM/SIGUSR1: the run checkpointed and can be resumed with --resume.
constexpr int kExitPreempted = 75;

struct RunContext {
  Config cfg;
  std::string config_text;  // dump_config(cfg)
  Communicator* comm = nullptr;
  torch::Device device = torch::kCPU;
  std::unique_ptr<CheckpointManager> ckpt;
  std::string resume_dir;   // "" = fresh start
  // train.precision = bf16 on CUDA: autocast to bfloat16 for the whole run (forward passes,
  // losses, rollouts), fp32 master weights and optimizer state. Null on CPU (fp32 there).
  std::unique_ptr<compat::AutocastScope> autocast;
  // Rank 0: the lock on run.dir (common/core/fs.h DirLock), held until this context ends; another
  // run in the same run.dir meanwhile is refused.
  std::unique_ptr<DirLock> run_lock;
};

// What a stage is asked to do: the resolved config and how to resume. parse_run_args builds it
// from the command line (--config, --set, --resume, --resume-from; prints usage and exits on
// --help or a bad flag); tests build it directly.
struct RunRequest {
  Config cfg;
  bool resume = false;      // --resume: continue from run.dir/checkpoints/latest if any
  std::string resume_from;  // --resume-from DIR: continue from exactly this checkpoint
  bool dry_run = false;     // --dry-run: print config, models, memory estimate; exit (dry_run.h)
  int dry_run_ranks = 0;    // --ranks N with --dry-run: plan for N ranks (0 = this job's count)
  int planned_ranks() const;  // dry_run_ranks, else the job's world size
};
RunRequest parse_run_args(const StageSpec& stage, int argc, char** argv);
// A stage executable's whole command line: parse_run_args, then --dry-run's report (dry_run.h)
// or run(request), under log_errors (an error also goes to run.dir/train.log). Returns the exit
// code. run (run_sft, run_rm, run_ppo, run_dpo) trains; tests call it with their own request.
int run_stage_cli(const StageSpec& stage, int argc, char** argv, int (*run)(const RunRequest&));

// req.cfg's stage (Config::stage) names the executable and plans the batch.
RunContext start_run(const RunRequest& req);

// Installs SIGTERM/SIGUSR1 handlers that only set a flag (the current step finishes).
void install_stop_signals();
// Collective: true on every rank when any rank received a stop signal.
bool stop_requested(Communicator& comm);
// For tests: set or clear the flag as a signal would.
void set_stop_flag_for_test(bool on);

// torch::kCUDA:<local rank % device count> or CPU; initialises NCCL for CUDA.
torch::Device select_run_device(const Config& cfg, Communicator& comm);

}  // namespace rlhf
