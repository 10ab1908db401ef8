#include "common/train/run.h"

#include "common/core/fs.h"
#include "common/core/version.h"
#include "common/train/dry_run.h"
#include "common/train/log.h"
#include "common/train/samples.h"
#include "common/train/tensorboard.h"

#include <CLI/CLI.hpp>

#include <csignal>
#include <filesystem>
#include <iostream>

namespace rlhf {

static volatile std::sig_atomic_t g_stop = 0;
static void on_stop_signal(int) { g_stop = 1; }

void install_stop_signals() {
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
}

void set_stop_flag_for_test(bool on) { g_stop = on ? 1 : 0; }

bool stop_requested(Communicator& comm) {
  return comm.all_reduce_scalar(g_stop ? 1.0 : 0.0, ReduceOp::Max) > 0;
}

torch::Device select_run_device(const Config& cfg, Communicator& comm) {
  if (cfg.train.device == DeviceKind::CPU) return torch::kCPU;
  torch::Device dev = parse_device("cuda", comm, "train.device");
  if (dev.is_cuda()) comm.init_nccl(dev);
  return dev;
}

RunRequest parse_run_args(const StageSpec& stage, int argc, char** argv) {
  const std::string exe = stage.name + "_train";
  CLI::App app{exe + ": " + stage.title};
  std::string config_file;
  std::vector<std::string> sets;
  bool resume = false;
  std::string resume_from;
  app.add_option("--config", config_file, "YAML config file");
  app.add_option("--set", sets, "override a key: --set train.learning_rate=3e-4 (repeatable)");
  app.add_flag("--resume", resume, "continue from run.dir/checkpoints/latest (fresh start if none)");
  app.add_option("--resume-from", resume_from, "continue from this checkpoint directory");
  bool dry = false;
  app.set_version_flag("--version", version_line(exe));
  app.add_flag("--dry-run", dry, "print the resolved config, each model's parameter count and a "
               "peak-memory estimate per rank, then exit");
  int ranks = 0;
  app.add_option("--ranks", ranks, "with --dry-run: the estimate for this many ranks (default: "
                 "this job's)")->check(CLI::Range(1, 1 << 20));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  RLHF_CHECK(ranks == 0 || dry, "--ranks {} only applies with --dry-run (a run uses the ranks "
             "mpirun starts)", ranks);
  return RunRequest{load_config(stage, config_file, sets), resume, resume_from, dry, ranks};
}

int run_stage_cli(const StageSpec& stage, int argc, char** argv, int (*run)(const RunRequest&)) {
  return log_errors([&] {
    const RunRequest req = parse_run_args(stage, argc, argv);
    return req.dry_run ? dry_run(req.cfg, req.planned_ranks()) : run(req);
  });
}

int RunRequest::planned_ranks() const {
  return dry_run_ranks > 0 ? dry_run_ranks : world().world_size();
}

RunContext start_run(const RunRequest& req) {
  const std::string exe = stage_name(req.cfg) + "_train";
  const bool resume = req.resume;
  const std::string& resume_from = req.resume_from;
  RunContext ctx;
  ctx.comm = &world();
  ctx.cfg = req.cfg;
  ctx.config_text = dump_config(ctx.cfg);
  Communicator& comm = *ctx.comm;
  check_consistency(comm, ctx.config_text, 0);
  // One run per run.dir (issue 32): rank 0 holds run.dir/.lock until the stage ends; a second run
  // is refused on every rank, naming the holder, before it writes anything there.
  std::string lock_error;
  if (comm.is_root()) {
    std::filesystem::create_directories(ctx.cfg.run.dir);
    try {
      ctx.run_lock = std::make_unique<DirLock>(ctx.cfg.run.dir, exe);
    } catch (const Error& e) {
      lock_error = e.what();
    }
  }
  const std::string root_error = comm.all_gather_string(lock_error).front();
  if (!root_error.empty()) throw Error("run.dir: " + root_error);
  if (comm.is_root()) write_file_atomic(ctx.cfg.run.dir + "/config.yaml", ctx.config_text);
  comm.barrier();
  log_setup(ctx.cfg.run.log_level, comm.rank(), ctx.cfg.run.dir + "/train.log");
  log_info("# {} resolved config ({} rank{})\n{}", version_line(exe), comm.world_size(),
           comm.world_size() > 1 ? "s" : "", ctx.config_text);
  if (comm.is_root())
    for (const auto& w : ineffective_keys(ctx.cfg)) log_warn("# warning: {}", w);
  if (ctx.cfg.train.micro_batch_size == 0) {
    // 0 = auto: this rank's whole share of an optimizer step in one forward (no accumulation).
    // Resolved here, not in config.yaml, so a run keeps "auto" when resumed on another rank count.
    const StagePlan plan = stage_plan(ctx.cfg);
    const bool own_step = plan.step_samples > 0;  // e.g. ppo.minibatch_size
    const int64_t share = own_step ? plan.step_samples : ctx.cfg.train.global_batch_size;
    RLHF_CHECK(share % comm.world_size() == 0,
               "train.micro_batch_size = 0 (auto) needs {} = {} to be divisible by the rank count {}",
               own_step ? plan.step_key : "train.global_batch_size", share, comm.world_size());
    // micro-batches count rows: plan.rows_per_sample per sample (PPO: rollout rows per prompt).
    ctx.cfg.train.micro_batch_size = share / comm.world_size() * plan.rows_per_sample;
    log_info("# train.micro_batch_size = 0 (auto): {} per rank, no accumulation",
             ctx.cfg.train.micro_batch_size);
  }
  ctx.device = select_run_device(ctx.cfg, comm);
  check_memory_fits(ctx.cfg, comm.world_size(), comm.local_size(), ctx.device.is_cuda());
  if (ctx.cfg.train.precision == Precision::BF16) {
    if (ctx.device.is_cuda())
      ctx.autocast = std::make_unique<compat::AutocastScope>(true, at::kBFloat16);
    else if (comm.is_root())
      log_warn("# train.precision: bf16 is CUDA autocast; on CPU this run computes in fp32");
  }
  ctx.ckpt = std::make_unique<CheckpointManager>(ctx.cfg.run.dir, ctx.cfg.ckpt.keep_last, comm);
  if (!resume_from.empty()) {
    CheckpointManager::validate(resume_from);  // explicit: a bad one is an error
    ctx.resume_dir = resume_from;
  } else if (resume || ctx.cfg.ckpt.resume == ResumeMode::Auto) {
    ctx.resume_dir = ctx.ckpt->find_latest();
    log_info("{}", ctx.resume_dir.empty() ? "# no checkpoint to resume from; starting fresh"
                                          : "# resuming from " + ctx.resume_dir);
  }
  if (!ctx.resume_dir.empty() && comm.is_root()) {
    const int64_t step = read_state_yaml(ctx.resume_dir + "/state.yaml").at("step").get<int64_t>();
    const int64_t dropped = drop_metrics_after(ctx.cfg.run.dir, step);
    if (dropped > 0)
      log_info("# metrics.jsonl: dropped {} rows logged after step {} (resumed there)", dropped, step);
    const int64_t dropped_samples = drop_jsonl_after(ctx.cfg.run.dir + "/samples.jsonl", step);
    if (dropped_samples > 0)
      log_info("# samples.jsonl: dropped {} rows logged after step {} (resumed there)", dropped_samples, step);
    const int64_t dropped_events = drop_events_after(ctx.cfg.run.dir + "/tb", step);
    if (dropped_events > 0)
      log_info("# tb: dropped {} events logged after step {} (resumed there)", dropped_events, step);
  }
  comm.barrier();
  install_stop_signals();
  return ctx;
}

}  // namespace rlhf
