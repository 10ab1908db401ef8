#include "common/train/tensorboard.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "common/core/check.h"
#include "common/core/fs.h"

namespace rlhf {

namespace fs = std::filesystem;

// ---- CRC-32C -----------------------------------------------------------------------------
namespace {
// Byte-at-a-time table of the reflected Castagnoli polynomial.
std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  static const std::array<uint32_t, 256> table = make_crc32c_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// ---- protobuf encoding of the few fields we write ----------------------------------------
namespace {
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
void put_tag(std::string& out, uint32_t field, WireType w) { put_varint(out, (field << 3) | w); }
template <class T>
void put_le(std::string& out, T v) {  // x86/ARM Linux are little-endian, as the format is
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void put_bytes(std::string& out, uint32_t field, const std::string& s) {
  put_tag(out, field, kBytes);
  put_varint(out, s.size());
  out += s;
}
}  // namespace

std::string encode_scalar_event(double wall_time, int64_t step,
                                const std::vector<std::pair<std::string, float>>& scalars) {
  std::string summary;
  for (const auto& [tag, v] : scalars) {
    std::string value;
    put_bytes(value, 1, tag);
    put_tag(value, 2, kFixed32);
    put_le(value, v);
    put_bytes(summary, 1, value);
  }
  std::string ev;
  put_tag(ev, 1, kFixed64);
  put_le(ev, wall_time);
  put_tag(ev, 2, kVarint);
  put_varint(ev, static_cast<uint64_t>(step));
  put_bytes(ev, 5, summary);
  return ev;
}

std::string encode_version_event(double wall_time) {
  std::string ev;
  put_tag(ev, 1, kFixed64);
  put_le(ev, wall_time);
  put_bytes(ev, 3, "brain.Event:2");
  return ev;
}

std::string tfrecord(const std::string& data) {
  std::string r;
  const uint64_t len = data.size();
  put_le(r, len);
  put_le(r, masked_crc32c(r.data(), 8));
  r += data;
  put_le(r, masked_crc32c(data.data(), data.size()));
  return r;
}

// ---- reading back (resume) ---------------------------------------------------------------
std::vector<std::string> read_tfrecords(const std::string& path, bool* torn) {
  const std::string bytes = read_file_bytes(path);
  std::vector<std::string> out;
  size_t pos = 0;
  if (torn) *torn = false;
  while (pos < bytes.size()) {
    uint64_t len = 0;
    uint32_t len_crc = 0, data_crc = 0;
    const bool head = pos + 12 <= bytes.size();
    if (head) {
      std::memcpy(&len, bytes.data() + pos, 8);
      std::memcpy(&len_crc, bytes.data() + pos + 8, 4);
    }
    if (!head || len_crc != masked_crc32c(bytes.data() + pos, 8) ||
        len > bytes.size() - pos - 12 || bytes.size() - pos - 12 - len < 4) {
      if (torn) *torn = true;
      break;
    }
    std::string data = bytes.substr(pos + 12, len);
    std::memcpy(&data_crc, bytes.data() + pos + 12 + len, 4);
    if (data_crc != masked_crc32c(data.data(), data.size())) {
      if (torn) *torn = true;
      break;
    }
    out.push_back(std::move(data));
    pos += 12 + len + 4;
  }
  return out;
}

int64_t event_step(const std::string& ev) {
  size_t pos = 0;
  auto varint = [&](uint64_t* v) {
    *v = 0;
    for (int shift = 0; pos < ev.size() && shift < 64; shift += 7) {
      const auto b = static_cast<unsigned char>(ev[pos++]);
      *v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (pos < ev.size()) {
    uint64_t key = 0, v = 0;
    if (!varint(&key)) return -1;
    const uint32_t field = static_cast<uint32_t>(key >> 3), wire = key & 7;
    if (wire == kVarint) {
      if (!varint(&v)) return -1;
      if (field == 2) return static_cast<int64_t>(v);
    } else if (wire == kFixed64) {
      pos += 8;
    } else if (wire == kFixed32) {
      pos += 4;
    } else if (wire == kBytes) {
      if (!varint(&v)) return -1;
      pos += v;
    } else {
      return -1;
    }
  }
  return -1;
}

namespace {
std::vector<std::string> event_files(const std::string& tb_dir) {
  std::vector<std::string> out;
  if (!fs::is_directory(tb_dir)) return out;
  for (const auto& e : fs::directory_iterator(tb_dir))
    if (e.is_regular_file() && e.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
      out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

int64_t drop_events_after(const std::string& tb_dir, int64_t step) {
  int64_t dropped = 0;
  for (const std::string& path : event_files(tb_dir)) {
    bool torn = false;
    std::string kept;
    int64_t here = 0;
    for (const std::string& ev : read_tfrecords(path, &torn)) {
      if (event_step(ev) > step) {
        ++here;
        continue;
      }
      kept += tfrecord(ev);
    }
    if (here > 0 || torn) write_file_atomic(path, kept);
    dropped += here;
  }
  return dropped;
}

void remove_event_files(const std::string& tb_dir) {
  for (const std::string& path : event_files(tb_dir)) {
    std::error_code ec;
    fs::remove(path, ec);
    RLHF_CHECK(!ec, "cannot remove the earlier run's '{}': {}", path, ec.message());
  }
}

// ---- the writer --------------------------------------------------------------------------
namespace {
double wall_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}
}  // namespace

EventWriter::EventWriter(const std::string& tb_dir) {
  std::error_code ec;
  fs::create_directories(tb_dir, ec);
  RLHF_CHECK(!ec, "cannot create the TensorBoard directory '{}': {}", tb_dir, ec.message());
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  // TensorBoard's own pattern: events.out.tfevents.<seconds>.<host>.<pid>.<n>; a second writer
  // within the same second in the same process gets the next n.
  static std::atomic<int> serial{0};
  const double now = wall_seconds();
  path_ = fmt::format("{}/events.out.tfevents.{:010d}.{}.{}.{}", tb_dir, static_cast<int64_t>(now),
                      host, static_cast<int64_t>(getpid()), serial++);
  out_.open(path_, std::ios::binary | std::ios::app);
  RLHF_CHECK(out_.good(), "cannot create '{}': {}", path_, std::strerror(errno));
  write(encode_version_event(now));
}

void EventWriter::scalars(int64_t step, const std::vector<std::pair<std::string, float>>& values) {
  write(encode_scalar_event(wall_seconds(), step, values));
}

void EventWriter::write(const std::string& event) {
  out_ << tfrecord(event);
  out_.flush();
  RLHF_CHECK(out_.good(), "cannot append to '{}': {}", path_, std::strerror(errno));
}

}  // namespace rlhf
