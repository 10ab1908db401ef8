// Runs under `mpirun -np 2` (ctest mpi.np2) and at world size 1: every rank draws its share with
// ShardedSampler; the shares are all-gathered and must equal the single-process global stream,
// covering each example exactly once per epoch. Also: a dataset written by rank 0 loads on all.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "common/data/data.h"
#include "common/dist/dist.h"
#include "common/tokenizer/tokenizer.h"

TEST(DataShardMpi, AllGatheredSharesCoverEachExampleOncePerEpoch) {
  rlhf::Communicator& comm = rlhf::world();
  const int w = comm.world_size();
  const int64_t n = 30, gb = 6 * w;  // at w = 2 batches straddle epochs (30 / 12)
  rlhf::ShardedSampler mine(n, 2024, comm.rank(), w);
  rlhf::ShardedSampler global(n, 2024, 0, 1);
  std::vector<int64_t> stream;
  const int steps = 10;
  for (int s = 0; s < steps; ++s) {
    auto share = mine.next(gb);
    ASSERT_EQ(static_cast<int64_t>(share.size()), gb / w);
    torch::Tensor t = torch::tensor(share, torch::kLong);  // [gb / w]
    torch::Tensor all = comm.all_gather(t);                 // [gb] in rank order
    std::vector<int64_t> got(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + all.numel());
    EXPECT_EQ(got, global.next(gb)) << "step " << s;
    stream.insert(stream.end(), got.begin(), got.end());
  }
  // each complete epoch of the gathered stream is a permutation of [0, n)
  for (size_t e = 0; (e + 1) * n <= stream.size(); ++e) {
    std::vector<int64_t> ep(stream.begin() + e * n, stream.begin() + (e + 1) * n);
    std::sort(ep.begin(), ep.end());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(ep[i], i) << "epoch " << e;
  }
  EXPECT_EQ(mine.cursor(), global.cursor());
}

TEST(DataShardMpi, Rank0WritesAllRanksRead) {
  rlhf::Communicator& comm = rlhf::world();
  std::string dir = comm.broadcast_string(
      comm.is_root() ? (std::filesystem::temp_directory_path() /
                        ("rlhf_shard_" + std::to_string(::getpid()))).string()
                     : std::string());
  std::string path = dir + "/p.h5";
  auto tok = rlhf::load_tokenizer("byte");
  if (comm.is_root()) {
    std::filesystem::create_directories(dir);
    rlhf::PromptData d;
    d.meta.tokenizer = tok->identity();
    d.meta.tokenizer_spec = tok->spec();
    d.meta.vocab_size = tok->vocab_size();
    d.meta.source = "test";
    d.prompt.push(tok->encode("list 3 fruits:"));
    d.save(path);
  }
  comm.barrier();
  auto d = rlhf::PromptData::load(path, tok->identity());
  EXPECT_EQ(tok->decode(d.prompt.row(0)), "list 3 fruits:");
  comm.barrier();
  if (comm.is_root()) std::filesystem::remove_all(dir);
}
