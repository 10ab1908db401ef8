// rlhf_eval — checkpoint evaluation for scripts: one JSON object on the last stdout line, logs on
// stderr. Subcommands: ppl, rm-acc, reward, compare, report (tools/eval/stage.h); sample (text on
// stdout, tools/eval/sample.h); generate (JSONL file, tools/eval/generate.h).
#include <CLI/CLI.hpp>

#include "common/core/version.h"
#include "common/dist/dist.h"
#include "tools/eval/generate.h"
#include "tools/eval/sample.h"
#include "tools/eval/stage.h"
#include "common/core/process.h"

int main(int argc, char** argv) {
  rlhf::choose_omp_wait_policy(argv);  // first: the OpenMP runtime reads it at load (process.h)
  rlhf::DistRuntime rt(&argc, &argv);
  return rlhf::run_main([&] {
    CLI::App app{"rlhf_eval: evaluate checkpoints (JSON on the last stdout line)"};
    app.require_subcommand(1);
    app.set_version_flag("--version", rlhf::version_line("rlhf_eval"));
    int exit_code = 0;
    rlhf::register_stage_eval_commands(app, &exit_code);
    rlhf::register_eval_sample(app, &exit_code);
    rlhf::register_eval_generate(app, &exit_code);
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    return exit_code;
  });
}
