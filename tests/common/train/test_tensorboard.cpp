// TensorBoard event files (train/tensorboard.h): CRC-32C against published check values, the
// masked CRC, the protobuf bytes of an Event worked out by hand, TFRecord framing, reading back
// with a torn tail, and resume (drop the steps after the checkpoint; a fresh start removes).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "common/core/fs.h"
#include "common/train/metrics.h"
#include "common/train/tensorboard.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace rlhf {
namespace {

using testing::TempDir;

TEST(Crc32c, KnownVectors) {
  // The CRC-32C check value (RFC 3720 B.4 / the CRC catalogue): "123456789" -> 0xE3069283.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0x00000000u);
  // RFC 3720 B.4: 32 bytes of zeros -> 0x8A9136AA, 32 bytes of 0xFF -> 0x62A8AB43.
  std::string zeros(32, '\0'), ones(32, '\xff');
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), 32), 0x62A8AB43u);
  // 32 incrementing bytes 0x00..0x1F -> 0x46DD794E (RFC 3720 B.4).
  std::string inc;
  for (int i = 0; i < 32; ++i) inc += static_cast<char>(i);
  EXPECT_EQ(crc32c(inc.data(), 32), 0x46DD794Eu);
}

TEST(Crc32c, Masked) {
  // c = 0xE3069283: c >> 15 = 0x0001C60D, c << 17 = 0x25060000 (mod 2^32), rotated 0x2507C60D;
  // + 0xA282EAD8 = 0xC78AB0E5 (mod 2^32).
  EXPECT_EQ(masked_crc32c("123456789", 9), 0xC78AB0E5u);
}

TEST(TensorBoard, ScalarEventBytes) {
  // wall_time 0.5 (double 0x3FE0000000000000), step 300, one value ("a", 1.0f = 0x3F800000).
  const std::string ev = encode_scalar_event(0.5, 300, {{"a", 1.0f}});
  const std::string expected =
      std::string("\x09", 1) + std::string("\x00\x00\x00\x00\x00\x00\xe0\x3f", 8) +  // field 1, fixed64
      std::string("\x10\xac\x02", 3) +   // field 2 varint: 300 = 0b10_0101100 -> 0xAC 0x02
      std::string("\x2a\x0a", 2) +       // field 5 (summary), 10 bytes
      std::string("\x0a\x08", 2) +       //   Summary.value (field 1), 8 bytes
      std::string("\x0a\x01" "a", 3) +   //     Value.tag "a"
      std::string("\x15\x00\x00\x80\x3f", 5);  // Value.simple_value (field 2, fixed32) 1.0f
  EXPECT_EQ(ev, expected);
  EXPECT_EQ(event_step(ev), 300);
  EXPECT_EQ(event_step(encode_version_event(1.0)), -1);
}

TEST(TensorBoard, RecordFraming) {
  const std::string data = "123456789";
  const std::string r = tfrecord(data);
  ASSERT_EQ(r.size(), 8u + 4u + 9u + 4u);
  uint64_t len = 0;
  uint32_t len_crc = 0, data_crc = 0;
  std::memcpy(&len, r.data(), 8);
  std::memcpy(&len_crc, r.data() + 8, 4);
  std::memcpy(&data_crc, r.data() + 21, 4);
  EXPECT_EQ(len, 9u);
  EXPECT_EQ(len_crc, masked_crc32c(r.data(), 8));
  EXPECT_EQ(data_crc, 0xC78AB0E5u);  // the masked CRC of "123456789" above
  EXPECT_EQ(r.substr(12, 9), data);
}

TEST(TensorBoard, ReadBackDropsTornTail) {
  TempDir d("tb");
  const std::string a = encode_scalar_event(1, 1, {{"x", 2.f}}), b = encode_scalar_event(2, 2, {{"x", 3.f}});
  const std::string whole = tfrecord(a) + tfrecord(b);
  d.write("f", whole.substr(0, whole.size() - 3));  // the second record cut short
  bool torn = false;
  auto recs = read_tfrecords(d.at("f"), &torn);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0], a);
  EXPECT_TRUE(torn);
  d.write("g", whole);
  EXPECT_EQ(read_tfrecords(d.at("g"), &torn).size(), 2u);
  EXPECT_FALSE(torn);
}

TEST(TensorBoard, ResumeDropsLaterStepsAndFreshStartRemoves) {
  TempDir d("tb");
  const std::string tb = d.at("tb");
  {
    EventWriter w(tb);
    for (int64_t s = 1; s <= 5; ++s) w.scalars(s, {{"loss", float(s)}});
  }
  EXPECT_EQ(drop_events_after(tb, 3), 2);  // steps 4 and 5
  std::vector<int64_t> steps;
  for (const auto& e : fs::directory_iterator(tb))
    for (const auto& ev : read_tfrecords(e.path().string())) steps.push_back(event_step(ev));
  EXPECT_EQ(steps, (std::vector<int64_t>{-1, 1, 2, 3}));  // the version event, then 1..3
  EXPECT_EQ(drop_events_after(tb, 3), 0);
  remove_event_files(tb);
  EXPECT_TRUE(fs::is_empty(tb));
  EXPECT_EQ(drop_events_after(d.at("none"), 3), 0);
}

TEST(TensorBoard, RowScalars) {
  nlohmann::json row = {{"step", 7}, {"loss", 1.5}, {"skipped", true}, {"name", "x"},
                        {"eval", {{"acc", 0.25}}}};
  auto s = row_scalars(row);
  std::map<std::string, float> m(s.begin(), s.end());
  EXPECT_EQ(m.size(), 3u);
  EXPECT_EQ(m["loss"], 1.5f);
  EXPECT_EQ(m["skipped"], 1.0f);
  EXPECT_EQ(m["eval/acc"], 0.25f);
}

TEST(TensorBoard, MetricsLoggerWritesEvents) {
  TempDir d("tb");
  {
    MetricsLogger m(d.path.string(), true, 2, 1, false, true);
    m.log({{"step", 1}, {"loss", 0.5}});
    // Flushed at every step: the file holds the row before the logger closes.
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(d.at("tb"))) n += read_tfrecords(e.path().string()).size();
    EXPECT_EQ(n, 2u);
  }
  MetricsLogger off(d.at("off"), true, 2, 1, false, false);
  off.log({{"step", 1}, {"loss", 0.5}});
  EXPECT_FALSE(fs::exists(d.at("off/tb")));
}

}  // namespace
}  // namespace rlhf
