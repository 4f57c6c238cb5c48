// Needle in a haystack (gkamradt's test, DeepSeek-V2 Figure 4): a needle sentence placed at a sentence boundary
// at each depth of a haystack cut to each context length, lengths exact in the model's tokens; scored without a
// judge model (needle recall 0..1, and the original 1..10 scale derived from it). docs/tasks.md "niah".
#pragma once

#include <string>
#include <vector>

#include "metrics/needle.h"
#include "tasks/hooks.h"

namespace mlabench::tasks::niah {

/// \brief The "niah" generator hook: one Subtask named context.task_name, one document per (length, depth)
/// cell, lengths outer and depths inner. Each TaskDoc: context = the prompt; target = config "answer";
/// doc = {context_length, depth_percent, cell ("<length>@<depth>"), needle_offset (byte offset of the needle in
/// the context), needle_depth_percent (haystack tokens before the needle / haystack_tokens, after the move to a
/// sentence boundary), haystack_tokens, prompt_tokens (measured: equals context_length)}. doc_id = the cell's
/// index in the full grid. Throws Error (with a HINT) when there is no tokenizer, a length cannot be met
/// exactly, or the haystack is empty.
std::vector<Subtask> generate(const GeneratorContext& context);

// The needle scores are metrics (metrics/needle.h: the registry calls them); named here too because the
// generator checks its answer with needle_words and the tests spell them niah::needle_recall.
using metrics::needle_recall;
using metrics::needle_words;
using metrics::score_1_10;

}  // namespace mlabench::tasks::niah
