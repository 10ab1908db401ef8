// rm_server.cpp — see rm_server.h.
#include "tools/serve/rm_server.h"

#include <algorithm>
#include <cmath>
#include <atomic>
#include <thread>

#include <fmt/format.h>

#ifdef RLHF_WITH_HTTP
#include <httplib.h>
#endif

#include "common/core/check.h"
#include "common/tokenizer/tokenizer.h"

namespace rlhf {

std::vector<RewardQuery> parse_reward_request(const std::string& body, int64_t max_request_rows) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded()) throw BadRequest("the body is not valid JSON (expected {\"query\": [\"text\", ...]})");
  if (!j.is_object() || !j.contains("query"))
    throw BadRequest("expected a JSON object with a \"query\" list of strings");
  const nlohmann::json& q = j["query"];
  if (!q.is_array()) throw BadRequest(fmt::format("\"query\" must be a list of strings, got {}", q.type_name()));
  if (q.empty()) throw BadRequest("\"query\" is empty");
  if (static_cast<int64_t>(q.size()) > max_request_rows)
    throw BadRequest(fmt::format("\"query\" has {} entries; this server takes at most {} per request "
                                 "(rlhf_serve --max-request-rows)", q.size(), max_request_rows));
  std::vector<RewardQuery> out(q.size());
  for (size_t i = 0; i < q.size(); ++i) {
    if (!q[i].is_string())
      throw BadRequest(fmt::format("query[{}] must be a string, got {}", i, q[i].type_name()));
    out[i].text = q[i].get<std::string>();
    out[i].eos = true;  // OpenRLHF's convention: every query is a finished response
  }
  if (j.contains("eos")) {
    const nlohmann::json& e = j["eos"];
    if (!e.is_array() || e.size() != q.size())
      throw BadRequest(fmt::format("\"eos\" must be a list of {} booleans (one per query)", q.size()));
    for (size_t i = 0; i < e.size(); ++i) {
      if (!e[i].is_boolean()) throw BadRequest(fmt::format("eos[{}] must be true or false, got {}", i, e[i].dump()));
      out[i].eos = e[i].get<bool>();
    }
  }
  return out;
}

// ---- BatchScorer -----------------------------------------------------------------------------

BatchScorer::BatchScorer(ScoreFn score, int64_t pad_id, int64_t max_batch_rows, int64_t max_queue_rows)
    : score_(std::move(score)), pad_id_(pad_id), max_batch_rows_(std::max<int64_t>(1, max_batch_rows)),
      max_queue_rows_(std::max<int64_t>(1, max_queue_rows)) {
  thread_ = std::thread([this] { loop(); });
}

BatchScorer::~BatchScorer() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    closing_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::future<std::vector<float>> BatchScorer::submit(std::vector<std::vector<int32_t>> rows) {
  auto job = std::make_unique<Job>();
  job->rows = std::move(rows);
  std::future<std::vector<float>> f = job->done.get_future();
  const int64_t n = static_cast<int64_t>(job->rows.size());
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (closing_) throw QueueFull("the server is shutting down");
    if (stats_.queued_rows + n > max_queue_rows_) {
      ++stats_.rejected;
      throw QueueFull(fmt::format("{} rows are waiting; {} more would exceed the queue bound of {} rows "
                                  "(rlhf_serve --max-queue-rows): retry later", stats_.queued_rows, n,
                                  max_queue_rows_));
    }
    stats_.queued_rows += n;
    ++stats_.requests;
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return f;
}

BatchStats BatchScorer::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

void BatchScorer::loop() {
  torch::NoGradGuard no_grad;  // thread-local: set on the scorer thread itself
  for (;;) {
    std::vector<std::unique_ptr<Job>> jobs;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closing, nothing left
      int64_t rows = 0;
      while (!queue_.empty()) {  // whole jobs in arrival order; the first one always
        const int64_t n = static_cast<int64_t>(queue_.front()->rows.size());
        if (!jobs.empty() && rows + n > max_batch_rows_) break;
        rows += n;
        jobs.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      stats_.queued_rows -= rows;
      stats_.rows += rows;
    }
    score_jobs(jobs);
  }
}

// The jobs' rows in forwards of at most max_batch_rows rows (a job larger than that is split),
// each right-padded to its longest row; every job gets its slice, or the error of any forward.
void BatchScorer::score_jobs(std::vector<std::unique_ptr<Job>>& jobs) {
  std::vector<const std::vector<int32_t>*> rows;
  for (const auto& j : jobs)
    for (const auto& r : j->rows) rows.push_back(&r);
  std::vector<float> scores;
  try {
    for (size_t a = 0; a < rows.size(); a += static_cast<size_t>(max_batch_rows_)) {
      const size_t e = std::min(rows.size(), a + static_cast<size_t>(max_batch_rows_));
      const int64_t B = static_cast<int64_t>(e - a);
      int64_t T = 1;
      for (size_t i = a; i < e; ++i) T = std::max<int64_t>(T, static_cast<int64_t>(rows[i]->size()));
      torch::Tensor tokens = torch::full({B, T}, pad_id_, torch::kLong);  // [B, T]
      torch::Tensor mask = torch::zeros({B, T}, torch::kBool);            // [B, T]
      auto ta = tokens.accessor<int64_t, 2>();
      auto ma = mask.accessor<bool, 2>();
      for (int64_t b = 0; b < B; ++b) {
        const std::vector<int32_t>& r = *rows[a + b];
        for (size_t t = 0; t < r.size(); ++t) {
          ta[b][t] = static_cast<int64_t>(r[t]);
          ma[b][t] = true;
        }
      }
      {
        std::lock_guard<std::mutex> lk(mu_);
        ++stats_.batches;
        stats_.max_batch_rows = std::max(stats_.max_batch_rows, B);
      }
      const torch::Tensor s = score_(tokens, mask).to(torch::kCPU).to(torch::kFloat).contiguous().view(-1);  // [B]
      RLHF_CHECK(s.numel() == B, "the reward model returned {} scores for {} rows", s.numel(), B);
      const float* p = s.data_ptr<float>();
      for (int64_t b = 0; b < B; ++b) {
        RLHF_CHECK(std::isfinite(p[b]), "the reward model's score is {} (not finite)", p[b]);
        scores.push_back(p[b]);
      }
    }
  } catch (...) {
    for (auto& j : jobs) j->done.set_exception(std::current_exception());
    return;
  }
  size_t at = 0;  // every score is known: no exception from here on
  for (auto& j : jobs) {
    j->done.set_value(std::vector<float>(scores.begin() + at, scores.begin() + at + j->rows.size()));
    at += j->rows.size();
  }
}

// ---- RmServer --------------------------------------------------------------------------------

struct RmServer::Impl {
  ScalarModel rm;
  std::shared_ptr<const Tokenizer> tok;
  QueryFraming framing;
  int64_t max_seq_len;
  std::string checkpoint;
  ServeOptions o;
  std::unique_ptr<BatchScorer> scorer;
  std::atomic<bool> entered{false}, exited{false}, stopping{false};  // run() / stop() handshake
#ifdef RLHF_WITH_HTTP
  httplib::Server http;
#endif
  Impl(ScalarModel m, std::shared_ptr<const Tokenizer> t, QueryFraming f, int64_t len, std::string ckpt,
       const ServeOptions& opt)
      : rm(std::move(m)), tok(std::move(t)), framing(f), max_seq_len(len), checkpoint(std::move(ckpt)), o(opt) {}
  std::vector<float> get_reward(const std::string& body);
  void routes();
};

// Parse, tokenize, queue, wait: the scores of one request (BadRequest / QueueFull / forward errors).
std::vector<float> RmServer::Impl::get_reward(const std::string& body) {
  const std::vector<RewardQuery> q = parse_reward_request(body, o.max_request_rows);
  std::vector<std::vector<int32_t>> rows;
  for (size_t i = 0; i < q.size(); ++i) {
    rows.push_back(reward_query_ids(*tok, framing, q[i].text, q[i].eos));
    if (rows.back().empty()) throw BadRequest(fmt::format("query[{}] is empty (no tokens to score)", i));
    if (static_cast<int64_t>(rows.back().size()) > max_seq_len)
      throw BadRequest(fmt::format("query[{}] has {} tokens; the reward model takes at most {} "
                                   "(its max_seq_len)", i, rows.back().size(), max_seq_len));
  }
  return scorer->submit(std::move(rows)).get();
}

#ifdef RLHF_WITH_HTTP
namespace {
void reply(httplib::Response& res, int status, const nlohmann::json& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}
}  // namespace

void RmServer::Impl::routes() {
  http.Post("/get_reward", [this](const httplib::Request& req, httplib::Response& res) {
    try {
      reply(res, 200, {{"rewards", get_reward(req.body)}});
    } catch (const BadRequest& e) {
      reply(res, 400, {{"error", e.what()}});
    } catch (const BatchScorer::QueueFull& e) {
      reply(res, 503, {{"error", e.what()}});
    } catch (const std::exception& e) {
      reply(res, 500, {{"error", fmt::format("scoring failed: {}", e.what())}});
    }
  });
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const BatchStats s = scorer->stats();
    reply(res, 200, {{"status", "ok"}, {"checkpoint", checkpoint}, {"max_seq_len", max_seq_len},
                     {"queued_rows", s.queued_rows}, {"requests", s.requests}, {"rows", s.rows},
                     {"batches", s.batches}, {"max_batch_rows", s.max_batch_rows}, {"rejected", s.rejected}});
  });
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404)
      reply(res, 404, {{"error", fmt::format("no route {} {} (POST /get_reward, GET /health)", req.method, req.path)}});
  });
}
#endif

RmServer::RmServer(ScalarModel rm, std::shared_ptr<const Tokenizer> tok, QueryFraming framing, int64_t max_seq_len,
                   std::string checkpoint, const ServeOptions& o, const torch::Device& dev)
    : impl_(std::make_unique<Impl>(std::move(rm), std::move(tok), framing, max_seq_len, std::move(checkpoint), o)) {
  Impl& m = *impl_;
  RLHF_CHECK(o.max_request_rows <= o.max_queue_rows, "rlhf_serve: --max-request-rows {} exceeds "
             "--max-queue-rows {}: such a request could never be queued", o.max_request_rows, o.max_queue_rows);
  m.rm->to(dev);
  m.rm->eval();
  const int64_t pad = std::max<int64_t>(0, m.tok->pad_id());
  m.scorer = std::make_unique<BatchScorer>(
      [model = m.rm, dev](const torch::Tensor& tokens, const torch::Tensor& mask) mutable {
        return model->score_last(tokens.to(dev), mask.to(dev));  // [B]
      },
      pad, o.max_batch_rows, o.max_queue_rows);
#ifdef RLHF_WITH_HTTP
  m.http.new_task_queue = [n = std::max(1, o.threads)] { return new httplib::ThreadPool(n); };
  m.http.set_payload_max_length(64u << 20);
  m.routes();
#endif
}

RmServer::~RmServer() = default;

int RmServer::bind() {
#ifdef RLHF_WITH_HTTP
  Impl& m = *impl_;
  // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, with which a second server binds
  // the same port and the kernel splits the queries between two models (issue 32). Without it a
  // port in use is refused (a port in TIME_WAIT is still reusable).
  m.http.set_socket_options([](auto sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof yes);
  });
  int port = m.o.port;
  if (port == 0) {
    port = m.http.bind_to_any_port(m.o.host);
    RLHF_CHECK(port > 0, "rlhf_serve: cannot bind {} on any port", m.o.host);
  } else {
    RLHF_CHECK(m.http.bind_to_port(m.o.host, port), "rlhf_serve: cannot bind {}:{}: in use (another "
               "server?), or not an address of this machine", m.o.host, port);
  }
  return port;
#else
  throw Error("rlhf_serve: this build has no HTTP server (cpp-httplib, Debian's libcpp-httplib-dev, "
              "was not found when it was configured)");
#endif
}

// httplib's stop() does nothing before listen has begun, so a stop() racing a starting run()
// waits until the server runs (or run() saw the request and returned).
void RmServer::run() {
  Impl& m = *impl_;
  m.entered = true;
#ifdef RLHF_WITH_HTTP
  if (!m.stopping) m.http.listen_after_bind();
#endif
  m.exited = true;
}

void RmServer::stop() {
  Impl& m = *impl_;
  m.stopping = true;
#ifdef RLHF_WITH_HTTP
  while (m.entered && !m.exited && !m.http.is_running()) std::this_thread::yield();
  m.http.stop();
#endif
}

BatchStats RmServer::stats() const { return impl_->scorer->stats(); }

}  // namespace rlhf
