// Needle in a haystack (gkamradt's test, DeepSeek-V2 Figure 4): a needle sentence placed at a sentence boundary
// at each depth of a haystack cut to each context length, lengths exact in the model's tokens; scored without a
// judge model (needle recall 0..1, and the original 1..10 scale derived from it). docs/tasks.md "niah".
#pragma once

#include <string>
#include <vector>

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

/// \brief Lower-cased runs of ASCII letters and digits (bytes of multi-byte UTF-8 characters count as letters, so
/// non-Latin words stay whole): the words needle_recall compares.
std::vector<std::string> needle_words(const std::string& text);

/// \brief Fraction (0..1) of the answer's words (lower-cased runs of letters and digits) found among the
/// response's words, each answer word counted as often as it occurs; 1.0 when every word is there, 0.0 for an
/// empty response. Throws Error for an answer without words.
double needle_recall(const std::string& response, const std::string& answer);

/// \brief The original test's 1..10 judge scale from recall: 10 (all words), 7 (>= 0.75), 5 (>= 0.5),
/// 3 (>= 0.25), 1 (below).
int score_1_10(double recall);

}  // namespace mlabench::tasks::niah
