// process.h — run a shell command as a child with a deadline: `/bin/sh -c command` in its own
// process group, `input` written to its stdin while its stdout and stderr are read (no deadlock on
// large inputs or outputs), the whole group killed at the deadline. Used by ppo.reward: command.
//
// Contract:
// - run_shell never throws for what the program does (exit status, signal, timeout, output): the
//   result says it. It throws rlhf::Error naming `what` only when /bin/sh cannot be started.
// - SIGPIPE is ignored in the caller while the child runs (a program that exits without reading
//   all of stdin must not kill the caller); the child gets the default disposition back.
// - The answer is complete when the shell exits: background children it leaves holding stdout get
//   kGraceAfterExit more, then its process group is killed.
#pragma once
#include <chrono>
#include <string>

namespace rlhf {

// The OpenMP wait policy every binary runs with (issue 34, docs/PERFORMANCE.md): OpenMP worker
// threads that spin at barriers (the runtime's default) take a shared machine's cores from the
// thread they wait for, 10-100x slower steps with one competing process; PASSIVE threads sleep.
// The runtime reads OMP_WAIT_POLICY once, when it loads (before main), so a binary started
// without it set re-executes itself (same pid and arguments, before MPI or any thread starts)
// with OMP_WAIT_POLICY=kOmpWaitPolicy; a value the user set is kept. The launchers
// (launch/*.sh) export it so that nothing re-executes. RLHF_OMP_REEXEC=0 turns the re-exec off.
// Call first thing in main.
inline constexpr const char* kOmpWaitPolicy = "PASSIVE";
void choose_omp_wait_policy(char** argv);

inline constexpr std::chrono::milliseconds kGraceAfterExit{200};

struct ShellResult {
  bool timed_out = false;  // the deadline passed first: the process group was killed
  int status = 0;          // waitpid's status (when !timed_out)
  std::string out;         // all of stdout
  std::string err_tail;    // the last ~2000 bytes of stderr
  bool exited_ok() const;  // exited normally with status 0
  // "exited with status 3" / "was killed by signal 9", with the stderr tail when any.
  std::string exit_text() const;
  // "; its stderr ends: ..." or "" (for error messages).
  std::string stderr_suffix() const;
};

ShellResult run_shell(const std::string& command, const std::string& input, double timeout_s,
                      const std::string& what);

}  // namespace rlhf
