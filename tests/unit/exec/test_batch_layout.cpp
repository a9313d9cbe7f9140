// layout_batch: rows grouped by adapter in order of first appearance, every per-row and
// per-entry array filled as the kernels expect, checked by hand on small batches; and every
// malformed entry refused, naming the request, before any device work.
#include <gtest/gtest.h>

#include <vector>

#include "core/common/error.hpp"
#include "core/exec/batch_layout.hpp"

namespace lorasched {
namespace {

constexpr int32_t kBlock = 4;

struct Seq {
  api::AdapterId adapter;
  int32_t context;              // tokens in the cache after this step
  int32_t new_tokens;           // tokens run now
  std::vector<int32_t> blocks;  // block table
  std::vector<int32_t> tokens;  // the new token ids
};

ExecBatch batch_of(std::vector<Seq>& seqs) {
  ExecBatch b;
  int64_t id = 100;
  for (Seq& s : seqs) {
    ExecEntry e;
    e.request = id++;
    e.adapter = s.adapter;
    e.prefill = s.new_tokens > 1;
    e.new_tokens = s.new_tokens;
    e.context_tokens = s.context;
    e.block_table = s.blocks;
    e.tokens = s.tokens;
    b.entries.push_back(e);
  }
  return b;
}

TEST(BatchLayout, GroupsRowsByAdapterInOrderOfFirstAppearance) {
  // Entries: A(prefill 3 tokens) B(decode) A(decode) none(decode) B(prefill 2).
  std::vector<Seq> seqs = {
      {7, 3, 3, {5}, {11, 12, 13}},  // rows 0-2, positions 0-2, block 5
      {2, 6, 1, {1, 9}, {21}},       // decode at position 5: block 9 offset 1
      {7, 9, 1, {0, 3, 8}, {31}},    // position 8: block 8 offset 0
      {api::kNoAdapter, 1, 1, {6}, {41}},
      {2, 5, 2, {2, 4}, {51, 52}},  // positions 3, 4: block 2 offset 3, block 4 offset 0
  };
  const BatchLayout L = layout_batch(batch_of(seqs), kBlock, 10, 100);
  EXPECT_EQ(L.tokens, 8);
  // Slots in order of first appearance: 7, 2, none. Rows: entries 0, 2 (adapter 7), 1, 4
  // (adapter 2), 3 (none).
  EXPECT_EQ(L.slots, (std::vector<api::AdapterId>{7, 2, api::kNoAdapter}));
  EXPECT_EQ(L.token_ids, (std::vector<int32_t>{11, 12, 13, 31, 21, 51, 52, 41}));
  EXPECT_EQ(L.positions, (std::vector<int32_t>{0, 1, 2, 8, 5, 3, 4, 0}));
  EXPECT_EQ(L.kv_slots, (std::vector<int32_t>{5 * 4 + 0, 5 * 4 + 1, 5 * 4 + 2, 8 * 4 + 0, 9 * 4 + 1,
                                              2 * 4 + 3, 4 * 4 + 0, 6 * 4 + 0}));
  // Last row of each entry, in entry order.
  EXPECT_EQ(L.last_row, (std::vector<int32_t>{2, 4, 3, 7, 6}));
  ASSERT_EQ(L.seqs.size(), 5u);  // in row order: entries 0, 2, 1, 4, 3
  const int32_t q_start[] = {0, 3, 4, 5, 7}, q_len[] = {3, 1, 1, 2, 1}, context[] = {3, 9, 6, 5, 1};
  const size_t entry[] = {0, 2, 1, 4, 3};
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(L.seqs[i].q_start, q_start[i]) << i;
    EXPECT_EQ(L.seqs[i].q_len, q_len[i]) << i;
    EXPECT_EQ(L.seqs[i].context_len, context[i]) << i;
    EXPECT_EQ(L.seqs[i].block_table, seqs[entry[i]].blocks.data()) << i;
  }
  ASSERT_EQ(L.segments.size(), 3u);
  const int32_t seg[3][3] = {{0, 4, 0}, {4, 3, 1}, {7, 1, 2}};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(L.segments[i].start, seg[i][0]) << i;
    EXPECT_EQ(L.segments[i].len, seg[i][1]) << i;
    EXPECT_EQ(L.segments[i].slot, seg[i][2]) << i;
  }
}

TEST(BatchLayout, EmptyBatchHasNoRows) {
  const BatchLayout L = layout_batch(ExecBatch{}, kBlock, 10, 100);
  EXPECT_EQ(L.tokens, 0);
  EXPECT_TRUE(L.segments.empty());
}

// Each fault, alone in an otherwise good batch, is refused with the request's id.
TEST(BatchLayout, RefusesMalformedEntriesNamingTheRequest) {
  auto refused = [](std::vector<Seq> seqs, const char* what) {
    try {
      (void)layout_batch(batch_of(seqs), kBlock, 10, 100);
      ADD_FAILURE() << what << ": not refused";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  refused({{1, 3, 3, {5}, {1, 2}}}, "request 100: 2 token ids for 3 new tokens");
  refused({{1, 2, 3, {5}, {1, 2, 3}}}, "request 100: context 2 < 3 new tokens");
  refused({{1, 6, 1, {5}, {1}}}, "request 100: block table of 1 blocks too short for 6 tokens");
  refused({{1, 6, 1, {5, 10}, {1}}}, "request 100: KV block 10 out of range");
  refused({{1, 2, 2, {5}, {1, 100}}}, "token 100 outside the vocabulary of 100");
  refused({{1, 0, 0, {5}, {}}}, "a batch of 0 tokens");
}

}  // namespace
}  // namespace lorasched
