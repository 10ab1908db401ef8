// fs.h — reading whole files (bytes, JSON) with errors that name the path; and durable file
// writes: write to a temporary beside the target, fsync it, rename it over the target, fsync the
// directory. After a crash or power loss the target is either the old file or the complete new
// one, never a prefix.
// Contract: any rank may call (callers decide which rank writes); on failure the temporary is
// removed, the previous target is untouched, and rlhf::Error names the file and the OS cause
// (e.g. "No space left on device").
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace rlhf {

// The whole file as bytes; throws rlhf::Error naming the path when it cannot be opened or read.
std::string read_file_bytes(const std::string& path);
// The file parsed as JSON; throws naming the path and the parser's message.
nlohmann::json read_json_file(const std::string& path);

// fsync of a file or a directory (opened read-only); throws naming the path on failure.
void fsync_path(const std::string& path);
// fsync of the directory holding path (so a rename or create inside it is durable).
void fsync_parent(const std::string& path);
// fsync of every regular file under dir (recursively), then of each directory, dir last. `sync`
// is called on each path in that order (fsync_path; tests pass a recorder).
void fsync_tree(const std::string& dir,
                const std::function<void(const std::string&)>& sync = fsync_path);

// Whether a and b name the same file: by identity (device and inode: links, other spellings) when
// both exist, else by their normalised absolute paths.
bool same_file(const std::string& a, const std::string& b);

// Writes text to path durably (temp file + fsync + rename + directory fsync).
void write_file_atomic(const std::string& path, const std::string& text);

// Generalised form: write(tmp) creates the temporary file (any format: HDF5, safetensors, ...);
// then it is fsync'd and renamed over path, and the directory fsync'd. If write throws, the
// temporary is removed and the exception propagates.
void replace_file_atomic(const std::string& path, const std::function<void(const std::string&)>& write);

// An exclusive lock on a directory for the life of the object: flock(2) on DIR/.lock, which the
// kernel releases on any exit of the process (a crash included), so a lock file left behind is
// stale exactly when no process holds it. The holder writes who it is (`who`, its host, pid and
// start time) into the file; a second taker gets rlhf::Error naming the directory and that holder.
class DirLock {
 public:
  DirLock(const std::string& dir, const std::string& who);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace rlhf
