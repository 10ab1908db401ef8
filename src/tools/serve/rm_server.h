// rm_server.h — `rlhf_serve rm` (issue 19): a trained reward model over HTTP, with the request
// shape of OpenRLHF's reward server (and of ppo.reward: remote, ppo/reward/remote.h):
//   POST /get_reward  {"query": ["<prompt and response as text>", ...], "eos": [true, ...]}
//                     → 200 {"rewards": [<float>, ...]}   ("eos" optional: default all true)
//   GET  /health      → 200 {"status": "ok", "checkpoint", "max_seq_len", "queued_rows",
//                            "requests", "rows", "batches", "max_batch_rows", "rejected"}
// Each query becomes ids by common/tokenizer/reward_query.h (the reward model's own framing: BOS +
// text + EOS for plain rows, the text alone for chat-template rows) and is scored at its last
// token, as in training and as ppo.reward: rm scores a rollout.
//
// Batching: httplib's handler threads (ServeOptions::threads) parse and tokenize a request, then
// hand its rows to the BatchScorer as one job and wait for its answer; the scorer's single thread
// takes the waiting jobs in arrival order, whole, while they fit in max_batch_rows rows (the first
// always), scores them in forwards of at most max_batch_rows rows (right-padded; a row's score
// does not depend on its batch beyond float round-off) and answers each job. So up to `threads`
// requests are batched together; more connections wait in httplib's accept queue.
// The queue is bounded: a job that would take the waiting rows past max_queue_rows is refused at
// once with HTTP 503 (retry later); max_request_rows may not exceed max_queue_rows, so any valid
// request fits an empty queue. A score that is not finite, or a forward that fails, is HTTP 500.
// Errors: malformed JSON, no "query" list, an entry that is not a string, an "eos" list of another
// length or with a non-boolean, an empty list, more than max_request_rows queries, a query longer
// than the model's max_seq_len tokens → HTTP 400 {"error": "<what, naming the key and index>"}.
// Either way (400, 500, 503) the server keeps serving.
// Thread-safety: BatchScorer::submit and RmServer's handlers may be called from any thread.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "common/tokenizer/reward_query.h"
#include "common/model/model.h"

namespace rlhf {

class Tokenizer;

// A request the server answers with HTTP 400 (the message says what is wrong).
struct BadRequest : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Parses a /get_reward body into queries; throws BadRequest.
std::vector<RewardQuery> parse_reward_request(const std::string& body, int64_t max_request_rows);

struct BatchStats {
  int64_t requests = 0, rows = 0, batches = 0, max_batch_rows = 0, rejected = 0, queued_rows = 0;
};

class BatchScorer {
 public:
  // score: [B, T] tokens, [B, T] bool mask (right-padded) → [B] float scores; run on the
  // scorer thread only (a model is not called from two threads at once).
  using ScoreFn = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>;
  BatchScorer(ScoreFn score, int64_t pad_id, int64_t max_batch_rows, int64_t max_queue_rows);
  ~BatchScorer();  // finishes the jobs already queued, then stops the thread
  BatchScorer(const BatchScorer&) = delete;
  // The scores of rows (each a non-empty id list), or an exception from the forward. Throws
  // QueueFull (without queueing) when the waiting rows would exceed max_queue_rows.
  struct QueueFull : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  std::future<std::vector<float>> submit(std::vector<std::vector<int32_t>> rows);
  BatchStats stats() const;

 private:
  struct Job {
    std::vector<std::vector<int32_t>> rows;
    std::promise<std::vector<float>> done;
  };
  void loop();
  void score_jobs(std::vector<std::unique_ptr<Job>>& jobs);
  ScoreFn score_;
  int64_t pad_id_, max_batch_rows_, max_queue_rows_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool closing_ = false;
  BatchStats stats_;
  std::thread thread_;
};

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 5000;               // 0: any free port (bind() returns it)
  int threads = 32;              // HTTP handler threads: requests parsed and batched at once
  int64_t max_batch_rows = 64;   // the most rows in one forward
  int64_t max_queue_rows = 4096; // rows waiting before 503
  int64_t max_request_rows = 1024;
};

// The reward model of a checkpoint behind /get_reward and /health.
class RmServer {
 public:
  RmServer(ScalarModel rm, std::shared_ptr<const Tokenizer> tok, QueryFraming framing, int64_t max_seq_len,
           std::string checkpoint, const ServeOptions& o, const torch::Device& dev);
  ~RmServer();
  int bind();   // binds host:port; returns the port; throws rlhf::Error naming host:port
  void run();   // serves until stop() (blocking; call bind() first)
  void stop();  // safe from any thread
  BatchStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rlhf
