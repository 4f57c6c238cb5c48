#include "engine/serving/block_pool.h"

#include <algorithm>
#include <set>

#include "core/check.h"

namespace mlabench::serving {

namespace {

uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  h *= 0xbf58476d1ce4e5b9ull;
  return h ^ (h >> 31);
}

}  // namespace

BlockPool::BlockPool(int64_t n_blocks, int64_t block_size, uint64_t bytes_per_block, int n_partitions)
    : block_size_(block_size),
      bytes_per_block_(bytes_per_block),
      ref_(static_cast<size_t>(std::max<int64_t>(n_blocks, 0)), 0),
      hash_(static_cast<size_t>(std::max<int64_t>(n_blocks, 0)), 0) {
  MLABENCH_CHECK(n_blocks >= 1 && block_size >= 1, "a KV block pool needs at least one block of at least one token; "
                 "got {} blocks of {} tokens", n_blocks, block_size);
  MLABENCH_CHECK(n_partitions >= 1 && n_blocks % n_partitions == 0 && n_blocks >= n_partitions,
                 "a KV block pool of {} blocks cannot split into {} equal partitions", n_blocks, n_partitions);
  free_.resize(static_cast<size_t>(n_partitions));
  lru_.resize(static_cast<size_t>(n_partitions));
  // Lowest ids first: a short run touches only the start of each partition.
  for (int64_t b = n_blocks - 1; b >= 0; --b)
    free_[static_cast<size_t>(partition_of(static_cast<int32_t>(b)))].push_back(static_cast<int32_t>(b));
}

int64_t BlockPool::available(int partition) const {
  MLABENCH_ICHECK(partition >= 0 && partition < n_partitions(), "partition {} of a pool of {}", partition,
                  n_partitions());
  const auto p = static_cast<size_t>(partition);
  return static_cast<int64_t>(free_[p].size() + lru_[p].size());
}

int64_t BlockPool::available() const {
  int64_t n = 0;
  for (int p = 0; p < n_partitions(); ++p) n += available(p);
  return n;
}

int32_t BlockPool::allocate(int partition) {
  MLABENCH_ICHECK(partition >= 0 && partition < n_partitions(), "allocate from partition {} of a pool of {}",
                  partition, n_partitions());
  std::vector<int32_t>& free = free_[static_cast<size_t>(partition)];
  std::list<int32_t>& lru = lru_[static_cast<size_t>(partition)];
  int32_t b;
  if (!free.empty()) {
    b = free.back();
    free.pop_back();
  } else if (!lru.empty()) {
    b = lru.front();
    lru.pop_front();
    lru_pos_.erase(b);
    table_.erase(hash_[static_cast<size_t>(b)]);
    hash_[static_cast<size_t>(b)] = 0;
  } else {
    return -1;
  }
  ref_[static_cast<size_t>(b)] = 1;
  return b;
}

int32_t BlockPool::lookup(uint64_t hash) {
  auto it = table_.find(hash);
  if (it == table_.end()) return -1;
  const int32_t b = it->second;
  if (ref_[static_cast<size_t>(b)]++ == 0) {
    lru_[static_cast<size_t>(partition_of(b))].erase(lru_pos_.at(b));
    lru_pos_.erase(b);
  }
  return b;
}

void BlockPool::publish(int32_t block, uint64_t hash) {
  MLABENCH_ICHECK(hash != 0 && ref_.at(static_cast<size_t>(block)) > 0, "publish of block {} (hash {}, refs {})",
                  block, hash, ref_.at(static_cast<size_t>(block)));
  if (hash_[static_cast<size_t>(block)] != 0 || table_.count(hash)) return;
  hash_[static_cast<size_t>(block)] = hash;
  table_[hash] = block;
}

void BlockPool::release(int32_t block) {
  int32_t& r = ref_.at(static_cast<size_t>(block));
  MLABENCH_ICHECK(r > 0, "release of block {}, which nobody references", block);
  if (--r > 0) return;
  const auto p = static_cast<size_t>(partition_of(block));
  if (hash_[static_cast<size_t>(block)] != 0) {
    lru_[p].push_back(block);
    lru_pos_[block] = std::prev(lru_[p].end());
  } else {
    free_[p].push_back(block);
  }
}

void BlockPool::check_consistency() const {
  std::vector<int> seen(ref_.size(), 0);
  size_t n_lru = 0;
  for (int p = 0; p < n_partitions(); ++p) {
    for (int32_t b : free_[static_cast<size_t>(p)]) {
      MLABENCH_CHECK(ref_[static_cast<size_t>(b)] == 0 && hash_[static_cast<size_t>(b)] == 0 && partition_of(b) == p,
                     "free block {} of partition {} has {} references and hash {} (its partition: {})", b, p,
                     ref_[static_cast<size_t>(b)], hash_[static_cast<size_t>(b)], partition_of(b));
      ++seen[static_cast<size_t>(b)];
    }
    for (int32_t b : lru_[static_cast<size_t>(p)]) {
      MLABENCH_CHECK(ref_[static_cast<size_t>(b)] == 0 && hash_[static_cast<size_t>(b)] != 0 && partition_of(b) == p,
                     "LRU block {} of partition {} has {} references and hash {} (its partition: {})", b, p,
                     ref_[static_cast<size_t>(b)], hash_[static_cast<size_t>(b)], partition_of(b));
      ++seen[static_cast<size_t>(b)];
    }
    n_lru += lru_[static_cast<size_t>(p)].size();
  }
  MLABENCH_CHECK(lru_pos_.size() == n_lru, "LRU index holds {} blocks, the LRUs {}", lru_pos_.size(), n_lru);
  for (size_t b = 0; b < ref_.size(); ++b) {
    MLABENCH_CHECK(ref_[b] >= 0, "block {} has {} references", b, ref_[b]);
    MLABENCH_CHECK(seen[b] + (ref_[b] > 0 ? 1 : 0) == 1, "block {} is in {} of the free list, the LRU and the "
                   "referenced set (refs {})", b, seen[b] + (ref_[b] > 0 ? 1 : 0), ref_[b]);
    if (hash_[b] != 0) {
      auto it = table_.find(hash_[b]);
      MLABENCH_CHECK(it != table_.end() && it->second == static_cast<int32_t>(b),
                     "block {} carries hash {} that the prefix table does not map back to it", b, hash_[b]);
    }
  }
  for (const auto& [h, b] : table_)
    MLABENCH_CHECK(hash_.at(static_cast<size_t>(b)) == h, "prefix table maps hash {} to block {} holding hash {}", h,
                   b, hash_.at(static_cast<size_t>(b)));
}

uint64_t BlockPool::root_hash(int partition) {
  return partition == 0 ? kRootHash : mix(kRootHash, static_cast<uint64_t>(partition)) | 1;
}

uint64_t BlockPool::chain_hash(uint64_t parent, std::span<const int32_t> block_tokens) {
  uint64_t h = parent;
  for (int32_t t : block_tokens) h = mix(h, static_cast<uint64_t>(static_cast<uint32_t>(t)));
  return h ? h : 1;
}

}  // namespace mlabench::serving
