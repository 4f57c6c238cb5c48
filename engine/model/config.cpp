// config.json parsing. Field names and defaults follow the configs the checkpoints ship (HF remote code
// `configuration_deepseek.py` for DeepSeek-V2, transformers' LlamaConfig). Every rejection names the field,
// the value found and the values accepted.
//
// Tables, not branches on names, drive the parse: the architectures (model_type, the `architectures` class
// name, the default attention kind, the RoPE scaling types accepted), the attention kinds ("mla", "gqa": the
// fields each reads and the RoPE layout it implies), the RoPE scaling types, the router's scoring functions and
// top-k methods. The same tables give the "accepted values" of every error. The DeepSeekMoE fields are read by
// one function for every architecture.
#include "engine/model/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/check.h"
#include "core/input_file.h"
#include "core/json_limits.h"
#include "core/json_fields.h"

namespace mlabench {

namespace {

// Every size field is at most 2^24: generous for any real model (vocab 256K, positions 160K, widths 16K), and
// small enough that the products the engine and `info` form (parameters, bytes, cache slots) fit 64 bits.
constexpr int64_t kMaxSize = int64_t{1} << 24;

int64_t positive(const JsonFields& f, const std::string& key) {
  int64_t v = f.integer(key);
  MLABENCH_CHECK(v > 0 && v <= kMaxSize, "{}: field '{}' is {}; accepted range 1 .. {}", f.where(), key, v,
                 kMaxSize);
  return v;
}

// A floating-point field that must be finite and within (lo, hi): values outside give NaN or nonsense logits.
double bounded_number(const JsonFields& f, const std::string& key, double fallback, double lo, double hi) {
  const double v = f.number_or(key, fallback);
  MLABENCH_CHECK(std::isfinite(v) && v > lo && v < hi, "{}: field '{}' is {}; accepted range: greater than {} and "
                 "less than {}", f.where(), key, v, lo, hi);
  return v;
}

// ---- Registries --------------------------------------------------------------------------------------------

template <class T>
struct Named {
  const char* name;  // as config.json spells it
  T value;
};

constexpr Named<ScoringFunc> kScoringFuncs[] = {{"softmax", ScoringFunc::SOFTMAX}, {"sigmoid", ScoringFunc::SIGMOID}};
constexpr Named<TopkMethod> kTopkMethods[] = {{"greedy", TopkMethod::GREEDY},
                                              {"group_limited_greedy", TopkMethod::GROUP_LIMITED_GREEDY}};

// RoPE scaling types: the name in rope_scaling.type / rope_parameters.rope_type and the reader of its fields
// (null: no fields).
void parse_yarn(const JsonFields& r, RopeConfig& rope);
void parse_llama3(const JsonFields& r, RopeConfig& rope);
struct RopeScalingSpec {
  const char* name;
  RopeType type;
  void (*parse)(const JsonFields& r, RopeConfig& rope);
};
constexpr RopeScalingSpec kRopeScalings[] = {{"default", RopeType::DEFAULT, nullptr},
                                             {"yarn", RopeType::YARN, parse_yarn},
                                             {"llama3", RopeType::LLAMA3, parse_llama3}};

// Attention kinds: the name of "mlabench_attention" and the reader of the fields the kind needs. Each reader also
// sets which dimensions RoPE rotates and how they pair.
void parse_mla(const JsonFields& f, ModelConfig& c);
void parse_gqa(const JsonFields& f, ModelConfig& c);
struct AttentionSpec {
  const char* name;
  AttentionKind kind;
  void (*parse)(const JsonFields& f, ModelConfig& c);
};
constexpr AttentionSpec kAttentionKinds[] = {{"mla", AttentionKind::MLA, parse_mla},
                                             {"gqa", AttentionKind::GQA, parse_gqa}};

// Architectures by model_type. Each accepts plain RoPE and the one scaling type its reference implements (the
// remote code's YaRN for DeepSeek-V2, transformers' llama3 for Llama), whatever the attention kind.
struct ArchitectureSpec {
  const char* name;        // model_type
  const char* class_name;  // the one name its `architectures` list may hold
  Architecture arch;
  AttentionKind default_attention;
  RopeType rope_scaling;
};
constexpr ArchitectureSpec kArchitectures[] = {
    {"deepseek_v2", "DeepseekV2ForCausalLM", Architecture::DEEPSEEK_V2, AttentionKind::MLA, RopeType::YARN},
    {"llama", "LlamaForCausalLM", Architecture::LLAMA, AttentionKind::GQA, RopeType::LLAMA3},
};

template <class Spec, size_t N>
std::string accepted_names(const Spec (&table)[N]) {
  std::string s;
  for (const Spec& e : table) s += (s.empty() ? "" : ", ") + std::string(e.name);
  return s;
}

// The row of `table` named `found` (the value of `field`), or an error naming the field, the value found and
// every name the table accepts, with `hint` when one helps.
template <class Spec, size_t N>
const Spec& find_named(const Spec (&table)[N], const std::string& where, const std::string& field,
                       const std::string& found, const std::string& hint = "") {
  for (const Spec& e : table)
    if (found == e.name) return e;
  MLABENCH_FAIL("{}: field '{}' is \"{}\"; accepted values: {}{}", where, field, found, accepted_names(table),
                hint.empty() ? "" : ". HINT: " + hint);
}

template <class T, size_t N>
std::string name_of(const Named<T> (&table)[N], T value) {
  for (const auto& e : table)
    if (e.value == value) return e.name;
  return "?";
}

// ---- Fields every architecture has ---------------------------------------------------------------------------

void parse_common(const JsonFields& f, ModelConfig& c) {
  c.vocab_size = positive(f, "vocab_size");
  c.hidden_size = positive(f, "hidden_size");
  c.n_layers = positive(f, "num_hidden_layers");
  c.n_heads = positive(f, "num_attention_heads");
  c.intermediate_size = positive(f, "intermediate_size");
  c.max_position_embeddings = f.integer_or("max_position_embeddings", 4096);
  MLABENCH_CHECK(c.max_position_embeddings > 0 && c.max_position_embeddings <= kMaxSize,
                 "{}: field 'max_position_embeddings' is {}; accepted range 1 .. {}", f.where(),
                 c.max_position_embeddings, kMaxSize);
  c.rms_norm_eps = bounded_number(f, "rms_norm_eps", 1e-6, 0.0, 1.0);
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
  c.bos_token_ids = f.integers_or_empty("bos_token_id");
  c.eos_token_ids = f.integers_or_empty("eos_token_id");

  const std::string act = f.string_or("hidden_act", "silu");
  MLABENCH_CHECK(act == "silu", "{}: field 'hidden_act' is \"{}\"; accepted values: silu", f.where(), act);
  MLABENCH_CHECK(!f.boolean_or("attention_bias", false),
                 "{}: field 'attention_bias' is true; accepted values: false (no checkpoint of the supported "
                 "families uses attention biases)",
                 f.where());
  MLABENCH_CHECK(!f.boolean_or("mlp_bias", false), "{}: field 'mlp_bias' is true; accepted values: false", f.where());

  // transformers >= 5 writes "dtype", older writers "torch_dtype".
  const std::string key = f.has("dtype") ? "dtype" : "torch_dtype";
  if (f.has(key)) {
    const std::string name = f.string(key);
    auto t = dtype_from_torch_name(name);
    MLABENCH_CHECK(t.has_value(), "{}: field '{}' is \"{}\"; accepted values: bfloat16, float16, float32", f.where(),
                   key, name);
    c.dtype = *t;
  }
}

// ---- Attention kinds -----------------------------------------------------------------------------------------

// MLA: the latent ranks and head splits of DeepSeek-V2. RoPE rotates the qk_rope_head_dim values of each head
// in consecutive pairs (2i, 2i+1), as the remote code does on the raw checkpoint (engine.md §2.3).
void parse_mla(const JsonFields& f, ModelConfig& c) {
  c.q_lora_rank = f.integer_or("q_lora_rank", 0);
  MLABENCH_CHECK(c.q_lora_rank >= 0, "{}: field 'q_lora_rank' must be null or a positive integer, found {}", f.where(),
                 c.q_lora_rank);
  c.kv_lora_rank = positive(f, "kv_lora_rank");
  c.qk_nope_head_dim = positive(f, "qk_nope_head_dim");
  c.qk_rope_head_dim = positive(f, "qk_rope_head_dim");
  c.v_head_dim = positive(f, "v_head_dim");
  MLABENCH_CHECK(c.qk_rope_head_dim % 2 == 0,
                 "{}: field 'qk_rope_head_dim' must be even (RoPE rotates pairs), found {}", f.where(),
                 c.qk_rope_head_dim);
  c.n_kv_heads = f.integer_or("num_key_value_heads", c.n_heads);
  MLABENCH_CHECK(c.n_kv_heads == c.n_heads,
                 "{}: field 'num_key_value_heads' is {} but MLA needs it equal to num_attention_heads ({}). HINT: "
                 "for grouped K/V heads set \"mlabench_attention\": \"gqa\"",
                 f.where(), c.n_kv_heads, c.n_heads);
  c.rope.dim = c.qk_rope_head_dim;
  c.rope.interleaved = true;
}

// GQA (MHA when num_key_value_heads == num_attention_heads, MQA when 1). RoPE rotates the whole head in pairs
// (i, i + head_dim/2): HF Llama checkpoints store q/k rows permuted for that form (engine.md §1.2).
void parse_gqa(const JsonFields& f, ModelConfig& c) {
  c.n_kv_heads = f.integer_or("num_key_value_heads", c.n_heads);
  MLABENCH_CHECK(c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0,
                 "{}: field 'num_key_value_heads' ({}) must be positive and divide num_attention_heads ({})", f.where(),
                 c.n_kv_heads, c.n_heads);
  if (f.has("head_dim")) {
    c.head_dim = positive(f, "head_dim");
  } else {
    MLABENCH_CHECK(c.hidden_size % c.n_heads == 0,
                   "{}: hidden_size ({}) is not a multiple of num_attention_heads ({}) and no head_dim is given",
                   f.where(), c.hidden_size, c.n_heads);
    c.head_dim = c.hidden_size / c.n_heads;
  }
  MLABENCH_CHECK(c.head_dim % 2 == 0, "{}: field 'head_dim' must be even (RoPE rotates pairs), found {}", f.where(),
                 c.head_dim);
  c.rope.dim = c.head_dim;
  c.rope.interleaved = false;
}

// ---- DeepSeekMoE ---------------------------------------------------------------------------------------------

// A field MoE layers cannot do without.
int64_t moe_required(const JsonFields& f, const ModelConfig& c, const std::string& key) {
  MLABENCH_CHECK(f.has(key),
                 "{}: field '{}' is missing, and n_routed_experts ({}) makes layers DeepSeekMoE layers, which need "
                 "it. HINT: set n_routed_experts to null for a dense model",
                 f.where(), key, c.n_routed_experts);
  return positive(f, key);
}

// The same fields and rule for every architecture: a config without n_routed_experts (every real Llama config)
// is dense; with it, layer i is MoE by ModelConfig::is_moe_layer.
void parse_moe(const JsonFields& f, ModelConfig& c) {
  c.n_routed_experts = f.integer_or("n_routed_experts", 0);
  MLABENCH_CHECK(c.n_routed_experts >= 0 && c.n_routed_experts <= 65536,
                 "{}: field 'n_routed_experts' is {}; accepted: null or 1 .. 65536", f.where(), c.n_routed_experts);
  if (c.n_routed_experts == 0) return;
  c.moe_intermediate_size = moe_required(f, c, "moe_intermediate_size");
  c.n_shared_experts = f.integer_or("n_shared_experts", 0);
  MLABENCH_CHECK(c.n_shared_experts >= 0, "{}: field 'n_shared_experts' must be >= 0, found {}", f.where(),
                 c.n_shared_experts);
  c.experts_per_token = moe_required(f, c, "num_experts_per_tok");
  MLABENCH_CHECK(c.experts_per_token <= c.n_routed_experts,
                 "{}: field 'num_experts_per_tok' ({}) exceeds n_routed_experts ({})", f.where(), c.experts_per_token,
                 c.n_routed_experts);
  c.first_k_dense_replace = f.integer_or("first_k_dense_replace", 0);
  MLABENCH_CHECK(c.first_k_dense_replace >= 0, "{}: field 'first_k_dense_replace' must be >= 0, found {}", f.where(),
                 c.first_k_dense_replace);
  c.moe_layer_freq = f.integer_or("moe_layer_freq", 1);
  MLABENCH_CHECK(c.moe_layer_freq >= 1, "{}: field 'moe_layer_freq' must be >= 1, found {}", f.where(),
                 c.moe_layer_freq);
  c.routed_scaling_factor = f.number_or("routed_scaling_factor", 1.0);
  c.norm_topk_prob = f.boolean_or("norm_topk_prob", false);
  c.scoring_func = find_named(kScoringFuncs, f.where(), "scoring_func", f.string_or("scoring_func", "softmax")).value;
  c.topk_method = find_named(kTopkMethods, f.where(), "topk_method", f.string_or("topk_method", "greedy"),
                             "noaux_tc is DeepSeek-V3's")
                      .value;
  if (c.topk_method == TopkMethod::GREEDY) {
    c.n_group = f.integer_or("n_group", 1);
    c.topk_group = f.integer_or("topk_group", c.n_group);
    return;
  }
  c.n_group = positive(f, "n_group");
  c.topk_group = positive(f, "topk_group");
  MLABENCH_CHECK(c.n_routed_experts % c.n_group == 0, "{}: field 'n_group' ({}) must divide n_routed_experts ({})",
                 f.where(), c.n_group, c.n_routed_experts);
  MLABENCH_CHECK(c.topk_group <= c.n_group, "{}: field 'topk_group' ({}) exceeds n_group ({})", f.where(), c.topk_group,
                 c.n_group);
  MLABENCH_CHECK(c.experts_per_token <= c.topk_group * (c.n_routed_experts / c.n_group),
                 "{}: field 'num_experts_per_tok' ({}) exceeds the experts in topk_group ({}) groups of {}", f.where(),
                 c.experts_per_token, c.topk_group, c.n_routed_experts / c.n_group);
}

// ---- RoPE ----------------------------------------------------------------------------------------------------

// DeepSeek remote-code YaRN; missing keys take that code's defaults.
void parse_yarn(const JsonFields& r, RopeConfig& rope) {
  rope.factor = r.number("factor");
  MLABENCH_CHECK(rope.factor > 0, "{}: field 'factor' must be positive, found {}", r.where(), rope.factor);
  rope.original_max_position_embeddings = r.integer("original_max_position_embeddings");
  MLABENCH_CHECK(rope.original_max_position_embeddings > 0,
                 "{}: field 'original_max_position_embeddings' must be positive, found {}", r.where(),
                 rope.original_max_position_embeddings);
  rope.beta_fast = r.number_or("beta_fast", 32.0);
  rope.beta_slow = r.number_or("beta_slow", 1.0);
  rope.mscale = r.number_or("mscale", 1.0);
  rope.mscale_all_dim = r.number_or("mscale_all_dim", 0.0);
}

void parse_llama3(const JsonFields& r, RopeConfig& rope) {
  rope.factor = r.number("factor");
  rope.low_freq_factor = r.number("low_freq_factor");
  rope.high_freq_factor = r.number("high_freq_factor");
  rope.original_max_position_embeddings = r.integer("original_max_position_embeddings");
  MLABENCH_CHECK(rope.factor > 0 && rope.high_freq_factor > rope.low_freq_factor && rope.low_freq_factor > 0 &&
                     rope.original_max_position_embeddings > 0,
                 "{}: llama3 scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
                 "original_max_position_embeddings > 0; found factor {}, low_freq_factor {}, high_freq_factor {}, "
                 "original_max_position_embeddings {}",
                 r.where(), rope.factor, rope.low_freq_factor, rope.high_freq_factor,
                 rope.original_max_position_embeddings);
}

// theta and the scaling type, from either style: hub (rope_theta + rope_scaling {type, ...}) or transformers >= 5
// (rope_parameters {rope_type, rope_theta, ...}). The dimensions and pairing were set by the attention kind.
void parse_rope(const JsonFields& f, const ArchitectureSpec& arch, ModelConfig& c) {
  std::string dict_key = "rope_scaling";
  nlohmann::json d = nlohmann::json::object();
  if (f.has("rope_parameters")) {
    dict_key = "rope_parameters";
    d = f.raw(dict_key);
    MLABENCH_CHECK(d.is_object(), "{}: field 'rope_parameters' must be an object, found {}", f.where(), d.dump());
    c.rope.theta = bounded_number(JsonFields(d, f.where() + " rope_parameters"), "rope_theta",
                                  f.number_or("rope_theta", 10000.0), 1.0, 1e30);
  } else {
    c.rope.theta = bounded_number(f, "rope_theta", 10000.0, 1.0, 1e30);
    if (f.has(dict_key)) {
      d = f.raw(dict_key);
      MLABENCH_CHECK(d.is_object(), "{}: field 'rope_scaling' must be an object or null, found {}", f.where(),
                     d.dump());
    }
  }
  const JsonFields r(d, f.where() + " " + dict_key);
  const std::string type_key = r.has("rope_type") ? "rope_type" : "type";
  const std::string kind = r.has(type_key) ? r.string(type_key) : "default";

  std::string accepted;
  for (const RopeScalingSpec& s : kRopeScalings) {
    if (s.type != RopeType::DEFAULT && s.type != arch.rope_scaling) continue;
    if (kind == s.name) {
      c.rope.type = s.type;
      if (s.parse != nullptr) s.parse(r, c.rope);
      return;
    }
    accepted += std::string(s.name) + ", ";
  }
  MLABENCH_FAIL(
      "{}: field '{}.{}' is \"{}\", which model_type {} does not support; accepted values: {}null (no "
      "scaling)",
      f.where(), dict_key, type_key, kind, arch.name, accepted);
}

void check_architectures_field(const JsonFields& f, const ArchitectureSpec& arch) {
  if (!f.has("architectures")) return;
  const auto& a = f.raw("architectures");
  MLABENCH_CHECK(a.is_array() && a.size() == 1 && a[0].is_string(),
                 "{}: field 'architectures' must be a list of one name, found {}", f.where(), a.dump());
  const std::string name = a[0].get<std::string>();
  MLABENCH_CHECK(name == arch.class_name, "{}: field 'architectures' is [\"{}\"] but model_type {} needs [\"{}\"]",
                 f.where(), name, arch.name, arch.class_name);
}

// Each field in range can still multiply out past 64 bits (2^24 layers of 2^24-wide experts): bound the parameter
// count, estimated in floating point, by 2^50 (a thousand times DeepSeek-V2's 236B).
void check_total_size(const ModelConfig& c) {
  const double h = static_cast<double>(c.hidden_size), layers = static_cast<double>(c.n_layers);
  const double experts = static_cast<double>(c.n_routed_experts + c.n_shared_experts + 1);
  const int64_t widest = std::max(c.intermediate_size, c.moe_intermediate_size);
  const double inter = static_cast<double>(widest);
  const double estimate = 2.0 * static_cast<double>(c.vocab_size) * h + layers * (8.0 * h * h + 3.0 * h * inter * experts);
  MLABENCH_CHECK(estimate < 1125899906842624.0,
                 "{}: the config describes about {:.3g} parameters (layers {}, hidden {}, intermediate {}, experts "
                 "{}), more than the 2^50 mlabench can count. HINT: check the size fields",
                 c.source, estimate, c.n_layers, c.hidden_size, widest, c.n_routed_experts);
}

}  // namespace

int64_t ModelConfig::n_moe_layers() const {
  int64_t n = 0;
  for (int64_t i = 0; i < n_layers; ++i) n += is_moe_layer(i) ? 1 : 0;
  return n;
}

ModelConfig config_from_json(const nlohmann::json& j, const std::string& where) {
  JsonFields f(j, where);
  ModelConfig c;
  c.source = where;
  const ArchitectureSpec arch =
      find_named(kArchitectures, where, "model_type", f.has("model_type") ? f.string("model_type") : "(missing)",
                 "DeepSeek LLM 7B/67B checkpoints use model_type llama; DeepSeek-V3 (deepseek_v3) is not supported");
  c.arch = arch.arch;
  c.model_type = arch.name;
  c.architecture = arch.class_name;
  check_architectures_field(f, arch);
  parse_common(f, c);
  const AttentionSpec attention = find_named(kAttentionKinds, where, "mlabench_attention",
                                              f.string_or("mlabench_attention", to_string(arch.default_attention)));
  c.attention = attention.kind;
  attention.parse(f, c);
  parse_moe(f, c);
  parse_rope(f, arch, c);
  check_total_size(c);
  return c;
}

ModelConfig load_config(const std::string& model_dir) {
  const std::filesystem::path p = std::filesystem::path(model_dir) / "config.json";
  refuse_non_regular_file(p, "the model's config.json");
  std::ifstream in(p);
  MLABENCH_CHECK(in.good(),
                 "cannot read {}. HINT: --model must be a folder holding config.json (a hub checkpoint "
                 "or one of configs/*)",
                 p.string());
  nlohmann::json j;
  try {
    j = parse_json_bounded(std::string(std::istreambuf_iterator<char>(in), {}), p.string());
  } catch (const nlohmann::json::parse_error& e) {
    MLABENCH_FAIL("{} is not valid JSON: {}", p.string(), e.what());
  }
  return config_from_json(j, p.string());
}

std::string to_string(ScoringFunc f) { return name_of(kScoringFuncs, f); }
std::string to_string(TopkMethod m) { return name_of(kTopkMethods, m); }
std::string to_string(AttentionKind k) {
  for (const AttentionSpec& a : kAttentionKinds)
    if (a.kind == k) return a.name;
  return "?";
}
std::string to_string(FfnKind k) { return k == FfnKind::DENSE ? "dense" : "moe"; }
std::string to_string(RopeType t) {
  for (const RopeScalingSpec& s : kRopeScalings)
    if (s.type == t) return s.name;
  return "?";
}

}  // namespace mlabench
