// BlockPool: the KV cache's blocks as host bookkeeping (vLLM v1's block pool). A block is block_size token
// slots in every layer; the runner owns the memory, the pool owns who uses which block:
//   - a free list (a released block with no cached prefix goes to its back, and allocation takes from there);
//   - reference counts (a block shared by several sequences through the prefix cache is released by each);
//   - the prefix cache: a full block's content is keyed by a hash of its tokens chained to its parent block's
//     hash, so equal hashes mean equal prefixes; a cached block nobody references stays reusable until
//     allocation needs it, oldest released first (LRU), and is then evicted from the cache;
//   - partitions (DP attention, issue 22): the ids split evenly into n_partitions ranges, partition p owning
//     [p * n / P, (p + 1) * n / P), each its own cache on its own rank, with its own free list and LRU. A sequence
//     takes all its blocks from one partition, and chains its prefix hashes from that partition's root
//     (root_hash), so a prefix cached on one rank is never handed to a sequence of another.
// No CUDA here: tested in CI (tests/serving).
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace mlabench::serving {

class BlockPool {
 public:
  /// n_blocks blocks of block_size tokens, each holding bytes_per_block bytes of cache (all layers), in
  /// n_partitions equal partitions (n_blocks must divide by it).
  BlockPool(int64_t n_blocks, int64_t block_size, uint64_t bytes_per_block, int n_partitions = 1);

  int64_t n_blocks() const { return static_cast<int64_t>(ref_.size()); }
  int64_t block_size() const { return block_size_; }
  uint64_t bytes_per_block() const { return bytes_per_block_; }
  int n_partitions() const { return static_cast<int>(free_.size()); }
  int64_t blocks_per_partition() const { return n_blocks() / n_partitions(); }
  int partition_of(int32_t block) const { return static_cast<int>(block / blocks_per_partition()); }
  /// Blocks allocate(partition) can hand out: its free ones plus its cached ones nobody references.
  int64_t available(int partition) const;
  /// The same over every partition.
  int64_t available() const;
  /// Blocks referenced by at least one sequence, and their bytes.
  int64_t n_referenced() const { return n_blocks() - available(); }
  uint64_t bytes_referenced() const { return static_cast<uint64_t>(n_referenced()) * bytes_per_block_; }
  /// Blocks that hold a published prefix (referenced or not).
  int64_t n_cached() const { return static_cast<int64_t>(table_.size()); }
  int32_t ref_count(int32_t block) const { return ref_.at(static_cast<size_t>(block)); }

  /// \brief A block of `partition` for new tokens, referenced once; evicts the partition's oldest unreferenced
  /// cached block when its free list is empty. -1 when every block of the partition is referenced.
  int32_t allocate(int partition = 0);
  /// \brief The cached block holding this prefix hash, now referenced once more; -1 if none.
  int32_t lookup(uint64_t hash);
  bool cached(uint64_t hash) const { return table_.count(hash) != 0; }
  /// \brief Publishes a full block's prefix hash so later sequences can share it (the first writer of a hash
  /// wins; a block is published once).
  void publish(int32_t block, uint64_t hash);
  /// \brief Drops one reference; at zero the block goes to the LRU if it is cached, else to the free list.
  void release(int32_t block);

  /// \brief Internal consistency (every block is exactly one of free, cached-unreferenced or referenced; the
  /// hash table and the blocks agree); throws Error naming the first violation. For tests.
  void check_consistency() const;

  /// \brief The prefix hash of a full block of tokens whose parent block has hash `parent` (kRootHash for the
  /// first block). Never 0 (0 marks "not cached").
  static uint64_t chain_hash(uint64_t parent, std::span<const int32_t> block_tokens);
  static constexpr uint64_t kRootHash = 0x51ed270b27a5f4c3ull;
  /// \brief The parent hash of a first block in `partition` (kRootHash for partition 0).
  static uint64_t root_hash(int partition);

 private:
  int64_t block_size_;
  uint64_t bytes_per_block_;
  std::vector<int32_t> ref_;
  std::vector<uint64_t> hash_;  // 0: not cached
  std::vector<std::vector<int32_t>> free_;  // per partition
  std::vector<std::list<int32_t>> lru_;     // per partition
  std::unordered_map<int32_t, std::list<int32_t>::iterator> lru_pos_;
  std::unordered_map<uint64_t, int32_t> table_;
};

}  // namespace mlabench::serving
