// rlhf_serve — serve a trained model over HTTP. Subcommand: rm (a reward model at POST
// /get_reward and GET /health; tools/serve/rm_server.h). Loopback only unless --host says
// otherwise; there is no authentication, so expose it to other machines only on a trusted network.
//
//   rlhf_serve rm --checkpoint RUN_OR_FILE [--host 127.0.0.1] [--port 5000] [--device auto]
//                 [--threads 32] [--max-batch-rows 64] [--max-queue-rows 4096]
//                 [--max-request-rows 1024] [--port-file F]
//
// Logs on stderr: one line when it listens ("rlhf_serve: listening on http://HOST:PORT ..."), and
// one when it stops. SIGINT or SIGTERM stops it after answering the requests in flight (a signal
// while the model loads takes effect once it has loaded); a second one ends it at once.
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/core/check.h"
#include "common/core/fs.h"
#include "common/core/version.h"
#include "common/data/batch.h"
#include "common/dist/dist.h"
#include "common/io/model_file.h"
#include "common/tokenizer/tokenizer.h"
#include "common/train/log.h"
#include "common/train/train_common.h"
#include "common/tokenizer/reward_query.h"
#include "tools/serve/rm_server.h"
#include "common/core/process.h"

namespace {

struct RmOpts {
  std::string checkpoint, device = "auto", port_file;
  rlhf::ServeOptions serve;
};

// The framing of the rows the reward model was trained on (for_rows, as rm_train framed them):
// plain rows BOS + text + EOS, rows of its chat template as written.
rlhf::QueryFraming framing_of(const rlhf::TokenizerInfo& t) {
  rlhf::DatasetMeta rows;
  rows.chat_template = t.chat_template;
  rows.end_of_turn = t.end_of_turn;
  const rlhf::SpecialIds ids = rlhf::for_rows(rlhf::special_ids(t), rows);
  return rlhf::query_framing(ids.bos, ids.eos, ids.add_eos);
}

// SIGINT and SIGTERM: blocked in every thread (main() blocks them before MPI or anything else
// starts a thread) and taken by serve_rm's waiting thread, which stops the server.
sigset_t stop_signals() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  return s;
}

int serve_rm(const RmOpts& o) {
  const torch::Device dev = rlhf::parse_device(o.device, rlhf::world());
  rlhf::ModelFile f;
  rlhf::ScalarModel rm = rlhf::load_scalar_model(o.checkpoint, dev, &f);
  std::shared_ptr<const rlhf::Tokenizer> tok = rlhf::load_tokenizer(f.tok.spec);
  rlhf::RmServer server(rm, tok, framing_of(f.tok), f.cfg.max_seq_len, o.checkpoint, o.serve, dev);
  const int port = server.bind();
  if (!o.port_file.empty()) rlhf::write_file_atomic(o.port_file, std::to_string(port) + "\n");
  rlhf::log_info("rlhf_serve: listening on http://{}:{} (POST /get_reward, GET /health): reward model {} "
                 "(tokenizer {}, max_seq_len {}, {}), {} handler threads, batches of <= {} rows",
                 o.serve.host, port, o.checkpoint, f.tok.spec, f.cfg.max_seq_len, dev.str(),
                 o.serve.threads, o.serve.max_batch_rows);
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    const sigset_t stop = stop_signals();
    int sig = 0;
    sigwait(&stop, &sig);
    if (done) return;  // released by the main thread below
    rlhf::log_info("rlhf_serve: signal {}: stopping after the requests in flight (another signal: at once)", sig);
    server.stop();
    sigwait(&stop, &sig);
    if (done) return;
    rlhf::log_warn("rlhf_serve: signal {} again: exiting now", sig);
    std::_Exit(128 + sig);
  });
  auto release_waiter = [&] {
    done = true;
    pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
  };
  try {
    server.run();
  } catch (...) {
    release_waiter();
    throw;
  }
  release_waiter();
  const rlhf::BatchStats s = server.stats();
  rlhf::log_info("rlhf_serve: stopped after {} requests ({} rows in {} batches, {} refused)", s.requests,
                 s.rows, s.batches, s.rejected);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  rlhf::choose_omp_wait_policy(argv);  // first: the OpenMP runtime reads it at load (process.h)
  const sigset_t stop = stop_signals();
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  rlhf::DistRuntime rt(&argc, &argv);
  return rlhf::run_main([&] {
    CLI::App app{"rlhf_serve: serve a trained model over HTTP"};
    app.require_subcommand(1);
    app.set_version_flag("--version", rlhf::version_line("rlhf_serve"));
    RmOpts o;
    CLI::App* rm = app.add_subcommand("rm", "a reward model: POST /get_reward {\"query\": [...]} -> {\"rewards\": [...]}");
    rm->add_option("--checkpoint", o.checkpoint, "reward model: a run directory or a model .h5")->required();
    rm->add_option("--host", o.serve.host, "address to listen on (default loopback)")->capture_default_str();
    rm->add_option("--port", o.serve.port, "port (0: any free port)")->capture_default_str()->check(CLI::Range(0, 65535));
    rm->add_option("--device", o.device, "auto | cpu | cuda | cuda:N")->capture_default_str();
    rm->add_option("--threads", o.serve.threads, "HTTP handler threads")->capture_default_str()->check(CLI::Range(1, 1024));
    rm->add_option("--max-batch-rows", o.serve.max_batch_rows, "most rows in one forward")
        ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
    rm->add_option("--max-queue-rows", o.serve.max_queue_rows, "most rows waiting; more get HTTP 503")
        ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
    rm->add_option("--max-request-rows", o.serve.max_request_rows, "most queries in one request; more get HTTP 400")
        ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
    rm->add_option("--port-file", o.port_file, "write the port here once listening (for scripts)");
    int exit_code = 0;
    rm->callback([&] { exit_code = serve_rm(o); });
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    return exit_code;
  });
}
