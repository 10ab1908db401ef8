// tensorboard.h — TensorBoard event files (run.dir/tb/events.out.tfevents.*) written without
// TensorFlow or protobuf: the few protobuf fields of a scalar Event, in TFRecord framing.
//
//   record  = uint64 LE length | uint32 LE masked_crc32c(length bytes) | data | masked_crc32c(data)
//   Event   = wall_time (1: double) | step (2: int64) | file_version (3: string) | summary (5)
//   Summary = value (1: repeated Value);  Value = tag (1: string) | simple_value (2: float)
//   masked_crc(c) = ((c >> 15) | (c << 17)) + 0xa282ead8  (mod 2^32)
//
// A file starts with an Event holding file_version "brain.Event:2". TensorBoard reads every
// events.* file of a directory in name order, so a resumed run writes a new file (its name
// sorts after the earlier ones: the wall-clock second comes first) after drop_events_after()
// has removed the steps the interrupted run logged after its checkpoint.
// Contract: the writer is used by rank 0 only (MetricsLogger); every write is flushed. Errors
// (cannot create/append, a damaged earlier file) throw rlhf::Error naming the file.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace rlhf {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), e.g. crc32c("123456789") = 0xE3069283.
uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc32c(const void* data, size_t n);

// Protobuf bytes of one Event with a Summary of simple_value scalars (tag, value).
std::string encode_scalar_event(double wall_time, int64_t step,
                                const std::vector<std::pair<std::string, float>>& scalars);
// Protobuf bytes of the file's first Event (wall_time, file_version "brain.Event:2").
std::string encode_version_event(double wall_time);
// One TFRecord: length, masked CRC of the length, data, masked CRC of the data.
std::string tfrecord(const std::string& data);

// The records of a TFRecord file; a truncated or CRC-failing tail (a killed writer) ends the
// list and sets *torn when given. Throws naming the file when it cannot be read.
std::vector<std::string> read_tfrecords(const std::string& path, bool* torn = nullptr);
// The step of an encoded Event (field 2), or -1 when it has none.
int64_t event_step(const std::string& event);

// Resume at `step`: rewrites every events file of tb_dir without the Events whose step is
// greater (and without a torn tail). Returns how many Events were dropped (0 without a dir).
int64_t drop_events_after(const std::string& tb_dir, int64_t step);
// Fresh start: removes tb_dir's events files (the earlier run's curves would mix with the new).
void remove_event_files(const std::string& tb_dir);

class EventWriter {
 public:
  // Creates tb_dir and a new events file in it, starting with the version Event.
  explicit EventWriter(const std::string& tb_dir);
  // One Event at `step` with these scalars; flushed before returning.
  void scalars(int64_t step, const std::vector<std::pair<std::string, float>>& values);
  const std::string& path() const { return path_; }

 private:
  void write(const std::string& event);
  std::string path_;
  std::ofstream out_;
};

}  // namespace rlhf
