// BlockPool (engine/serving/block_pool.h): the free list, reference counts, the prefix cache with its LRU
// eviction, byte accounting, and the consistency check catching broken books.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "engine/serving/block_pool.h"
#include "tests/test_util.h"

namespace mlabench::serving {
namespace {

TEST(BlockPool, AllocatesEveryBlockOnceThenRefuses) {
  BlockPool pool(4, 16, 1000);
  std::set<int32_t> got;
  for (int i = 0; i < 4; ++i) got.insert(pool.allocate());
  EXPECT_EQ(got, (std::set<int32_t>{0, 1, 2, 3})) << "lowest ids first, each once";
  EXPECT_EQ(pool.allocate(), -1);
  EXPECT_EQ(pool.available(), 0);
  EXPECT_EQ(pool.n_referenced(), 4);
  EXPECT_EQ(pool.bytes_referenced(), 4000u);
  pool.release(2);
  EXPECT_EQ(pool.available(), 1);
  EXPECT_EQ(pool.bytes_referenced(), 3000u);
  EXPECT_EQ(pool.allocate(), 2) << "a released uncached block is reused";
  pool.check_consistency();
}

TEST(BlockPool, PrefixCacheSharesAndEvictsOldestFirst) {
  BlockPool pool(3, 4, 64);
  const std::vector<int32_t> t1 = {1, 2, 3, 4}, t2 = {5, 6, 7, 8};
  const uint64_t h1 = BlockPool::chain_hash(BlockPool::kRootHash, t1);
  const uint64_t h2 = BlockPool::chain_hash(h1, t2);
  const int32_t a = pool.allocate(), b = pool.allocate();
  pool.publish(a, h1);
  pool.publish(b, h2);
  EXPECT_EQ(pool.n_cached(), 2);
  // A second sequence with the same prefix shares both blocks.
  EXPECT_EQ(pool.lookup(h1), a);
  EXPECT_EQ(pool.lookup(h2), b);
  EXPECT_EQ(pool.ref_count(a), 2);
  pool.check_consistency();
  // Both release: the blocks stay cached but unreferenced (reusable), a first, then b.
  for (int i = 0; i < 2; ++i) {
    pool.release(a);
    pool.release(b);
  }
  EXPECT_EQ(pool.available(), 3);
  EXPECT_EQ(pool.n_cached(), 2);
  EXPECT_TRUE(pool.cached(h1));
  // The free block goes first; then the oldest released cached block (a) is evicted from the cache.
  const int32_t c = pool.allocate();
  EXPECT_NE(c, a);
  EXPECT_NE(c, b);
  EXPECT_EQ(pool.allocate(), a);
  EXPECT_FALSE(pool.cached(h1));
  EXPECT_TRUE(pool.cached(h2));
  EXPECT_EQ(pool.lookup(h1), -1);
  // A looked-up cached block leaves the LRU: it cannot be evicted while referenced.
  EXPECT_EQ(pool.lookup(h2), b);
  EXPECT_EQ(pool.allocate(), -1);
  pool.check_consistency();
}

TEST(BlockPool, PublishKeepsTheFirstWriterAndHashesChain) {
  BlockPool pool(2, 2, 8);
  const std::vector<int32_t> x = {7, 9};
  const uint64_t h = BlockPool::chain_hash(BlockPool::kRootHash, x);
  EXPECT_NE(h, 0u);
  EXPECT_EQ(h, BlockPool::chain_hash(BlockPool::kRootHash, x)) << "deterministic";
  EXPECT_NE(h, BlockPool::chain_hash(h, x)) << "the parent is part of the key";
  EXPECT_NE(h, BlockPool::chain_hash(BlockPool::kRootHash, std::vector<int32_t>{9, 7})) << "order matters";
  const int32_t a = pool.allocate(), b = pool.allocate();
  pool.publish(a, h);
  pool.publish(b, h);  // the same content computed twice: the first stays the cached one
  EXPECT_EQ(pool.lookup(h), a);
  pool.release(b);
  EXPECT_EQ(pool.available(), 1);
  EXPECT_FALSE(pool.cached(BlockPool::chain_hash(h, x)));
  pool.check_consistency();
}

// Partitions: each allocates from its own id range, evicts only its own cached blocks, and roots its own hashes.
TEST(BlockPool, PartitionsAllocateAndEvictWithinTheirOwnRange) {
  BlockPool pool(8, 4, 64, 4);  // partitions {0,1} {2,3} {4,5} {6,7}
  ASSERT_EQ(pool.n_partitions(), 4);
  ASSERT_EQ(pool.blocks_per_partition(), 2);
  EXPECT_EQ(pool.allocate(1), 2);
  EXPECT_EQ(pool.allocate(1), 3);
  EXPECT_EQ(pool.allocate(1), -1) << "partition 1 is full while the others are empty";
  EXPECT_EQ(pool.available(1), 0);
  EXPECT_EQ(pool.available(0), 2);
  EXPECT_EQ(pool.available(), 6);
  EXPECT_EQ(pool.partition_of(5), 2);
  // A cached block of partition 1, released, is evicted only by partition 1's allocations.
  const std::vector<int32_t> t{1, 2, 3, 4};
  const uint64_t h1 = BlockPool::chain_hash(BlockPool::root_hash(1), t);
  pool.publish(2, h1);
  pool.release(2);
  EXPECT_EQ(pool.available(1), 1);
  EXPECT_EQ(pool.allocate(0), 0);
  EXPECT_EQ(pool.allocate(0), 1);
  EXPECT_EQ(pool.allocate(0), -1);
  EXPECT_TRUE(pool.cached(h1)) << "partition 0 filling up evicts nothing of partition 1";
  EXPECT_EQ(pool.allocate(1), 2);
  EXPECT_FALSE(pool.cached(h1)) << "partition 1's own allocation evicted it";
  pool.check_consistency();
  // Each partition chains from its own root: the same tokens never share a key across ranks.
  std::set<uint64_t> roots;
  for (int p = 0; p < 8; ++p) roots.insert(BlockPool::chain_hash(BlockPool::root_hash(p), t));
  EXPECT_EQ(roots.size(), 8u);
  EXPECT_EQ(BlockPool::root_hash(0), BlockPool::kRootHash) << "one partition keeps the hashes it always had";
  test::expect_error_with([] { BlockPool(7, 4, 8, 2); }, {"7 blocks", "2 equal partitions"});
  test::expect_error_with([] { BlockPool(2, 4, 8, 4); }, {"2 blocks", "4 equal partitions"});
}

class BlockPoolRandom : public ::testing::TestWithParam<int> {};

TEST_P(BlockPoolRandom, RandomOperationsKeepTheBooks) {
  const int parts = GetParam();
  BlockPool pool(32, 8, 100, parts);
  std::mt19937 rng(5);
  std::vector<int32_t> held;  // with repetition: one entry per reference
  std::vector<uint64_t> hashes;
  for (int step = 0; step < 5000; ++step) {
    const int op = static_cast<int>(rng() % 4);
    if (op == 0) {
      const int part = static_cast<int>(rng() % static_cast<uint32_t>(parts));
      const int32_t b = pool.allocate(part);
      if (b >= 0) {
        ASSERT_EQ(pool.partition_of(b), part);
        held.push_back(b);
      } else {
        EXPECT_EQ(pool.available(part), 0);
      }
    } else if (op == 1 && !held.empty()) {
      const size_t i = rng() % held.size();
      pool.release(held[i]);
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
    } else if (op == 2 && !held.empty()) {
      const uint64_t h = (rng() % 50) + 1;
      pool.publish(held[rng() % held.size()], h);
      hashes.push_back(h);
    } else if (op == 3 && !hashes.empty()) {
      const int32_t b = pool.lookup(hashes[rng() % hashes.size()]);
      if (b >= 0) held.push_back(b);
    }
    pool.check_consistency();
    std::multiset<int32_t> refs(held.begin(), held.end());
    for (int32_t b = 0; b < pool.n_blocks(); ++b) ASSERT_EQ(pool.ref_count(b), static_cast<int32_t>(refs.count(b)));
    ASSERT_EQ(pool.n_referenced(), static_cast<int64_t>(std::set<int32_t>(held.begin(), held.end()).size()));
    ASSERT_EQ(pool.bytes_referenced(), static_cast<uint64_t>(pool.n_referenced()) * 100u);
  }
}

INSTANTIATE_TEST_SUITE_P(Partitions, BlockPoolRandom, ::testing::Values(1, 4));

TEST(BlockPool, BrokenUseIsRefused) {
  EXPECT_NE(test::error_of([] { BlockPool(0, 4, 8); }).find("at least one block"), std::string::npos);
  // Releasing a block nobody holds is a scheduler bug: the pool stops the program rather than corrupt the cache.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        BlockPool pool(2, 4, 8);
        pool.release(0);
      },
      "nobody references");
}

}  // namespace
}  // namespace mlabench::serving
