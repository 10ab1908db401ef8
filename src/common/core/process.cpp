// process.cpp — see process.h.
#include "common/core/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <tuple>

#include <fmt/format.h>

#include "common/core/check.h"

extern char** environ;

namespace rlhf {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kStderrTail = 2000;  // bytes of the program's stderr kept for an error

// Both ends of a pipe, closed on destruction (and on exec in the child, unless dup2'ed).
struct Pipe {
  int r = -1, w = -1;
  Pipe() { RLHF_CHECK(pipe2(fds_, O_CLOEXEC) == 0, "pipe2: {}", std::strerror(errno)); r = fds_[0]; w = fds_[1]; }
  ~Pipe() { close_r(); close_w(); }
  void close_r() { if (r >= 0) ::close(r); r = -1; }
  void close_w() { if (w >= 0) ::close(w); w = -1; }
 private:
  int fds_[2];
};

// SIGPIPE ignored while this lives; the previous disposition comes back after.
struct IgnoreSigpipe {
  struct sigaction old {};
  IgnoreSigpipe() {
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old);
  }
  ~IgnoreSigpipe() { sigaction(SIGPIPE, &old, nullptr); }
};

// /bin/sh -c command in its own process group, stdin/stdout/stderr on the pipes.
pid_t spawn_shell(const std::string& command, const std::string& what, Pipe& in, Pipe& out, Pipe& err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in.r, 0);
  posix_spawn_file_actions_adddup2(&fa, out.w, 1);
  posix_spawn_file_actions_adddup2(&fa, err.w, 2);
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  sigset_t def;
  sigemptyset(&def);
  sigaddset(&def, SIGPIPE);  // the program gets the default SIGPIPE back
  posix_spawnattr_setsigdefault(&at, &def);
  posix_spawnattr_setpgroup(&at, 0);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF);
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, "/bin/sh", &fa, &at, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  RLHF_CHECK(rc == 0, "{}: cannot start /bin/sh: {}", what, std::strerror(rc));
  in.close_r();
  out.close_w();
  err.close_w();
  return pid;
}

// Feeds `input` and collects stdout / stderr until both close or the deadline passes, reaping
// the shell `pid` on the way (status: waitpid's, reaped set). Once the shell has exited, output
// is read for kGraceAfterExit more at most (left_open says a background child still held it).
// Returns false on timeout.
bool exchange(Pipe& in, Pipe& out, Pipe& err, const std::string& input, Clock::time_point deadline,
              pid_t pid, int& status, bool& reaped, bool& left_open, std::string& out_text, std::string& err_text) {
  Clock::time_point stop_reading = Clock::time_point::max();
  fcntl(in.w, F_SETFL, fcntl(in.w, F_GETFL) | O_NONBLOCK);
  size_t written = 0;
  if (input.empty()) in.close_w();
  char buf[65536];
  while (out.r >= 0 || err.r >= 0) {
    if (!reaped && waitpid(pid, &status, WNOHANG) == pid) {
      reaped = true;
      stop_reading = Clock::now() + kGraceAfterExit;
    }
    if (Clock::now() >= stop_reading) {
      left_open = true;
      return true;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::min(deadline, stop_reading) - Clock::now()).count();
    if (left <= 0) return Clock::now() < deadline;
    pollfd fds[3];
    int n = 0, i_in = -1, i_out = -1, i_err = -1;
    if (in.w >= 0) { i_in = n; fds[n++] = {in.w, POLLOUT, 0}; }
    if (out.r >= 0) { i_out = n; fds[n++] = {out.r, POLLIN, 0}; }
    if (err.r >= 0) { i_err = n; fds[n++] = {err.r, POLLIN, 0}; }
    if (poll(fds, n, static_cast<int>(std::min<int64_t>(left, reaped ? 1000 : 20))) < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (i_in >= 0 && fds[i_in].revents != 0) {
      const ssize_t k = ::write(in.w, input.data() + written, input.size() - written);
      if (k > 0) written += static_cast<size_t>(k);
      if ((k < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) in.close_w();  // EPIPE: it stopped reading
    }
    for (auto [idx, pipe, text] : {std::make_tuple(i_out, &out, &out_text), std::make_tuple(i_err, &err, &err_text)}) {
      if (idx < 0 || fds[idx].revents == 0) continue;
      const ssize_t k = ::read(pipe->r, buf, sizeof buf);
      if (k > 0) text->append(buf, static_cast<size_t>(k));
      else if (k == 0 || (errno != EAGAIN && errno != EINTR)) pipe->close_r();
    }
    if (err_text.size() > 2 * kStderrTail) err_text.erase(0, err_text.size() - kStderrTail);
  }
  return true;
}

// Waits for pid until the deadline; false on timeout. status: waitpid's.
bool wait_until(pid_t pid, Clock::time_point deadline, int& status) {
  while (true) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) return true;  // already reaped (should not happen)
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

bool ShellResult::exited_ok() const { return !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

std::string ShellResult::stderr_suffix() const {
  std::string t = err_tail.size() > kStderrTail ? err_tail.substr(err_tail.size() - kStderrTail) : err_tail;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t.empty() ? std::string() : "; its stderr ends: " + t;
}

std::string ShellResult::exit_text() const {
  return WIFEXITED(status) ? fmt::format("exited with status {}{}", WEXITSTATUS(status), stderr_suffix())
                           : fmt::format("was killed by signal {}{}", WTERMSIG(status), stderr_suffix());
}

ShellResult run_shell(const std::string& command, const std::string& input, double timeout_s,
                      const std::string& what) {
  IgnoreSigpipe no_sigpipe;
  Pipe in, out, err;
  const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  const pid_t pid = spawn_shell(command, what, in, out, err);
  ShellResult r;
  bool reaped = false, left_open = false;
  const bool done = exchange(in, out, err, input, deadline, pid, r.status, reaped, left_open, r.out, r.err_tail) &&
                    (reaped || wait_until(pid, deadline, r.status));
  if (done && left_open) kill(-pid, SIGKILL);  // the shell's leftover background children
  if (!done) {
    kill(-pid, SIGKILL);  // its whole process group (pipelines, children)
    waitpid(pid, &r.status, 0);
    r.timed_out = true;
  }
  return r;
}

void choose_omp_wait_policy(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  const char* reexec = std::getenv("RLHF_OMP_REEXEC");
  ::setenv("OMP_WAIT_POLICY", kOmpWaitPolicy, 1);
  if (reexec && std::string(reexec) == "0") return;
  ::execv("/proc/self/exe", argv);
  // No /proc (or exec refused): run on with the runtime's default, saying so once.
  std::fprintf(stderr, "warning: could not re-execute with OMP_WAIT_POLICY=%s (%s); OpenMP threads "
               "will spin at barriers, slow on a shared machine: export OMP_WAIT_POLICY\n",
               kOmpWaitPolicy, std::strerror(errno));
}

}  // namespace rlhf
