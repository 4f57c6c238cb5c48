// StepPlan: what one forward step computes, as the scheduler decided it, and StepOutput: what the runner hands
// back. The plan is runner-independent: the GPU runner packs it into device arrays (and pads it for CUDA graphs),
// the CPU runner walks it sequence by sequence.
//
// Rows: the step's new tokens, sequence after sequence (decode sequences first, one row each, then prefill
// chunks). Every row's K/V is written to its cache slot. Logits come back only for the rows listed in `logits`,
// each with why it is wanted:
//   SAMPLE  the last computed position of a generating sequence: draw its next token;
//   SCORE   a position inside a request's scored span: log p(target) and whether target is the argmax;
//   FULL    a position of an all_logits request: the whole row is copied to `dst`;
// every other row's logits are discarded (the output head does not run on them).
#pragma once

#include <cstdint>
#include <vector>

namespace mlabench::serving {

struct PlannedSequence {
  size_t request = 0;           ///< index of the request in its run
  int64_t first_position = 0;   ///< the step computes positions [first_position, first_position + n_new)
  int64_t n_new = 0;            ///< new rows (1 for a decode sequence)
  bool decode = false;          ///< one token continuing a generation (absorbed MLA); false: a prefill chunk
  std::vector<int32_t> blocks;  ///< the sequence's block table: blocks for positions [0, first_position + n_new)
  int32_t partition = 0;        ///< the cache partition its blocks are in (ModelRunner::cache_partitions)
};

enum class RowUse : uint8_t { SAMPLE, SCORE, FULL };

/// Sampling parameters of one SAMPLE row (kernels::SampleParams per row).
struct RowSampling {
  float temperature = 0.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
  int64_t step = 0;  ///< index of the token being drawn within its request
};

struct LogitRow {
  int32_t row = 0;        ///< index among the step's rows
  int32_t seq = 0;        ///< index into StepPlan::seqs
  RowUse use = RowUse::SAMPLE;
  int64_t position = 0;   ///< position of the row's token in its sequence
  int32_t target = -1;    ///< SCORE: the next token, whose log-probability is summed
  RowSampling sampling{};  ///< SAMPLE
  float* dst = nullptr;   ///< FULL: where the row's vocab logits go (host memory)
};

struct StepPlan {
  std::vector<PlannedSequence> seqs;  ///< decode sequences [0, n_decode), then prefill chunks
  int32_t n_decode = 0;
  std::vector<int32_t> tokens;     ///< [rows] token of each row
  std::vector<int32_t> positions;  ///< [rows] its position
  std::vector<int64_t> slots;      ///< [rows] cache slot its K/V goes to: block * block_size + position % block_size
  std::vector<LogitRow> logits;    ///< SAMPLE rows, then SCORE rows, then FULL rows (the order results come back)
  int64_t n_sample = 0, n_score = 0, n_full = 0;

  int64_t n_rows() const { return static_cast<int64_t>(tokens.size()); }
  int64_t n_seqs() const { return static_cast<int64_t>(seqs.size()); }
  /// Longest block table of the step's sequences.
  int64_t max_blocks() const {
    size_t m = 0;
    for (const PlannedSequence& s : seqs) m = s.blocks.size() > m ? s.blocks.size() : m;
    return static_cast<int64_t>(m);
  }
};

/// What a runner returns for a step (FULL rows were written to their dst).
struct StepOutput {
  std::vector<int32_t> sampled;    ///< [n_sample]
  std::vector<double> logprob;     ///< [n_score]
  std::vector<uint8_t> is_greedy;  ///< [n_score]
};

}  // namespace mlabench::serving
