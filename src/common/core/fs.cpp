// fs.cpp — see fs.h.
#include "common/core/fs.h"
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sstream>
#include <fstream>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <vector>

#include "common/core/check.h"

namespace fs = std::filesystem;

namespace rlhf {

std::string read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  RLHF_CHECK(f.good(), "cannot open '{}'", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  RLHF_CHECK(!f.bad(), "error reading '{}'", path);
  return ss.str();
}

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_file_bytes(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("'{}' is not valid JSON: {}", path, e.what()));
  }
}


namespace {

std::string os_error() { return std::strerror(errno); }

std::string temp_name(const std::string& path) {
  return fmt::format("{}.tmp{}", path, static_cast<long>(::getpid()));
}

}  // namespace

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  RLHF_CHECK(fd >= 0, "cannot open '{}' to sync it: {}", path, os_error());
  const int rc = ::fsync(fd);
  const int err = rc != 0 ? errno : 0;
  ::close(fd);
  // Some filesystems cannot fsync a directory (EINVAL); the data files were synced already.
  RLHF_CHECK(rc == 0 || (err == EINVAL && fs::is_directory(path)), "fsync of '{}' failed: {}",
             path, std::strerror(err));
}

void fsync_parent(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  fsync_path(parent.empty() ? std::string(".") : parent.string());
}

void fsync_tree(const std::string& dir, const std::function<void(const std::string&)>& sync) {
  std::vector<std::string> dirs;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) sync(e.path().string());
    else if (e.is_directory()) dirs.push_back(e.path().string());
  }
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) sync(*it);
  sync(dir);
}

void replace_file_atomic(const std::string& path,
                         const std::function<void(const std::string&)>& write) {
  const std::string tmp = temp_name(path);
  try {
    write(tmp);
    fsync_path(tmp);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = os_error();
    std::error_code ec;
    fs::remove(tmp, ec);
    throw Error(fmt::format("cannot rename '{}' to '{}': {}", tmp, path, err));
  }
  fsync_parent(path);
}

void write_file_atomic(const std::string& path, const std::string& text) {
  replace_file_atomic(path, [&](const std::string& tmp) {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    RLHF_CHECK(fd >= 0, "cannot create '{}': {}", tmp, os_error());
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const std::string err = os_error();
        ::close(fd);
        throw Error(fmt::format("cannot write '{}': {}", path, err));
      }
      done += static_cast<size_t>(n);
    }
    RLHF_CHECK(::close(fd) == 0, "cannot write '{}': {}", path, os_error());
  });
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec, ec2;
  if (std::filesystem::equivalent(a, b, ec)) return true;
  const auto ca = std::filesystem::weakly_canonical(a, ec), cb = std::filesystem::weakly_canonical(b, ec2);
  return !ec && !ec2 && ca == cb;
}

DirLock::DirLock(const std::string& dir, const std::string& who) {
  const std::string path = dir + "/.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  RLHF_CHECK(fd_ >= 0, "{}: cannot open the lock file: {}", path, std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder;
    try {
      holder = read_file_bytes(path);
    } catch (const Error&) {
    }
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    ::close(fd_);
    fd_ = -1;
    RLHF_CHECK(err != EWOULDBLOCK, "{} is in use by another run ({}): two runs in one directory would mix "
               "their configs, metrics and checkpoints; wait for it to end or set another run.dir",
               dir, holder.empty() ? std::string("holder unknown") : holder);
    RLHF_CHECK(false, "{}: cannot lock: {}", path, std::strerror(err));
  }
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  const std::time_t now = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  const std::string text = fmt::format("{}, pid {} on {}, since {}\n", who, ::getpid(), host, when);
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
    RLHF_CHECK(false, "{}: cannot write the lock holder: {}", path, std::strerror(errno));
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace rlhf
