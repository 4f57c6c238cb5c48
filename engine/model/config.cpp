// config.json parsing. Field names and defaults follow the configs the checkpoints ship (HF remote code
// `configuration_deepseek.py` for DeepSeek-V2, transformers' LlamaConfig). Every rejection names the field,
// the value found and the values accepted.
#include "engine/model/config.h"

#include <filesystem>
#include <fstream>

#include "engine/core/check.h"
#include "engine/core/json_fields.h"

namespace mlabench {

namespace {

int64_t positive(const JsonFields& f, const std::string& key) {
  int64_t v = f.integer(key);
  MLABENCH_CHECK(v > 0, "{}: field '{}' must be a positive integer, found {}", f.where(), key, v);
  return v;
}

std::string accepted_list(std::initializer_list<const char*> values) {
  std::string s;
  for (const char* v : values) s += (s.empty() ? "" : ", ") + std::string(v);
  return s;
}

// The rope dict and theta, from either style. Returns the dict (possibly empty) and sets theta.
nlohmann::json rope_dict(const JsonFields& f, double* theta) {
  nlohmann::json d = nlohmann::json::object();
  if (f.has("rope_parameters")) {  // transformers >= 5
    d = f.raw("rope_parameters");
    MLABENCH_CHECK(d.is_object(), "{}: field 'rope_parameters' must be an object, found {}", f.where(), d.dump());
    JsonFields rp(d, f.where() + " rope_parameters");
    *theta = rp.number_or("rope_theta", f.number_or("rope_theta", 10000.0));
  } else {
    *theta = f.number_or("rope_theta", 10000.0);
    if (f.has("rope_scaling")) {
      d = f.raw("rope_scaling");
      MLABENCH_CHECK(d.is_object(), "{}: field 'rope_scaling' must be an object or null, found {}", f.where(),
                     d.dump());
    }
  }
  return d;
}

std::string rope_kind(const nlohmann::json& d, const std::string& where) {
  if (d.empty()) return "default";
  JsonFields rf(d, where);
  if (rf.has("rope_type")) return rf.string("rope_type");
  if (rf.has("type")) return rf.string("type");
  return "default";
}

void parse_common(const JsonFields& f, ModelConfig& c) {
  c.vocab_size = positive(f, "vocab_size");
  c.hidden_size = positive(f, "hidden_size");
  c.n_layers = positive(f, "num_hidden_layers");
  c.n_heads = positive(f, "num_attention_heads");
  c.intermediate_size = positive(f, "intermediate_size");
  c.max_position_embeddings = f.integer_or("max_position_embeddings", 4096);
  MLABENCH_CHECK(c.max_position_embeddings > 0, "{}: field 'max_position_embeddings' must be positive, found {}",
                 f.where(), c.max_position_embeddings);
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

void parse_deepseek_v2(const JsonFields& f, ModelConfig& c) {
  c.arch = Architecture::DEEPSEEK_V2;
  c.architecture = "DeepseekV2ForCausalLM";
  c.attention = AttentionKind::MLA;
  parse_common(f, c);
  c.rms_norm_eps = f.number_or("rms_norm_eps", 1e-6);

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
                 "{}: field 'num_key_value_heads' is {} but MLA needs it equal to num_attention_heads ({})", f.where(),
                 c.n_kv_heads, c.n_heads);

  // MoE. n_routed_experts null means a dense model (every layer a SwiGLU MLP).
  c.n_routed_experts = f.integer_or("n_routed_experts", 0);
  if (c.n_routed_experts > 0) {
    c.moe_intermediate_size = positive(f, "moe_intermediate_size");
    c.n_shared_experts = f.integer_or("n_shared_experts", 0);
    MLABENCH_CHECK(c.n_shared_experts >= 0, "{}: field 'n_shared_experts' must be >= 0, found {}", f.where(),
                   c.n_shared_experts);
    c.experts_per_token = positive(f, "num_experts_per_tok");
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
    const std::string scoring = f.string_or("scoring_func", "softmax");
    MLABENCH_CHECK(scoring == "softmax",
                   "{}: field 'scoring_func' is \"{}\"; accepted values: softmax (sigmoid scoring is DeepSeek-V3's)",
                   f.where(), scoring);
    const std::string method = f.string_or("topk_method", "greedy");
    if (method == "greedy") {
      c.topk_method = TopkMethod::GREEDY;
      c.n_group = f.integer_or("n_group", 1);
      c.topk_group = f.integer_or("topk_group", c.n_group);
    } else if (method == "group_limited_greedy") {
      c.topk_method = TopkMethod::GROUP_LIMITED_GREEDY;
      c.n_group = positive(f, "n_group");
      c.topk_group = positive(f, "topk_group");
      MLABENCH_CHECK(c.n_routed_experts % c.n_group == 0, "{}: field 'n_group' ({}) must divide n_routed_experts ({})",
                     f.where(), c.n_group, c.n_routed_experts);
      MLABENCH_CHECK(c.topk_group <= c.n_group, "{}: field 'topk_group' ({}) exceeds n_group ({})", f.where(),
                     c.topk_group, c.n_group);
      MLABENCH_CHECK(c.experts_per_token <= c.topk_group * (c.n_routed_experts / c.n_group),
                     "{}: field 'num_experts_per_tok' ({}) exceeds the experts in topk_group ({}) groups of {}",
                     f.where(), c.experts_per_token, c.topk_group, c.n_routed_experts / c.n_group);
    } else {
      MLABENCH_FAIL("{}: field 'topk_method' is \"{}\"; accepted values: {}", f.where(), method,
                    accepted_list({"greedy", "group_limited_greedy"}));
    }
  }

  c.rope.dim = c.qk_rope_head_dim;
  c.rope.interleaved = true;
  nlohmann::json d = rope_dict(f, &c.rope.theta);
  const std::string kind = rope_kind(d, f.where() + " rope_scaling");
  if (kind == "default") {
    c.rope.type = RopeType::DEFAULT;
  } else if (kind == "yarn") {
    JsonFields r(d, f.where() + " rope_scaling");
    c.rope.type = RopeType::YARN;
    c.rope.factor = r.number("factor");
    MLABENCH_CHECK(c.rope.factor > 0, "{}: rope_scaling field 'factor' must be positive, found {}", f.where(),
                   c.rope.factor);
    c.rope.original_max_position_embeddings = r.integer("original_max_position_embeddings");
    MLABENCH_CHECK(c.rope.original_max_position_embeddings > 0,
                   "{}: rope_scaling field 'original_max_position_embeddings' must be positive", f.where());
    c.rope.beta_fast = r.number_or("beta_fast", 32.0);
    c.rope.beta_slow = r.number_or("beta_slow", 1.0);
    c.rope.mscale = r.number_or("mscale", 1.0);
    c.rope.mscale_all_dim = r.number_or("mscale_all_dim", 0.0);
  } else {
    MLABENCH_FAIL("{}: rope scaling type \"{}\" is not supported for deepseek_v2; accepted values: {}", f.where(), kind,
                  accepted_list({"yarn", "null (no scaling)"}));
  }
}

void parse_llama(const JsonFields& f, ModelConfig& c) {
  c.arch = Architecture::LLAMA;
  c.architecture = "LlamaForCausalLM";
  c.attention = AttentionKind::GQA;
  parse_common(f, c);
  c.rms_norm_eps = f.number_or("rms_norm_eps", 1e-6);
  c.n_kv_heads = f.integer_or("num_key_value_heads", c.n_heads);
  MLABENCH_CHECK(c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0,
                 "{}: field 'num_key_value_heads' ({}) must divide num_attention_heads ({})", f.where(), c.n_kv_heads,
                 c.n_heads);
  if (f.has("head_dim")) {
    c.head_dim = positive(f, "head_dim");
  } else {
    MLABENCH_CHECK(c.hidden_size % c.n_heads == 0,
                   "{}: hidden_size ({}) is not a multiple of num_attention_heads ({}) and no head_dim is given",
                   f.where(), c.hidden_size, c.n_heads);
    c.head_dim = c.hidden_size / c.n_heads;
  }
  MLABENCH_CHECK(c.head_dim % 2 == 0, "{}: head_dim must be even (RoPE rotates pairs), found {}", f.where(),
                 c.head_dim);

  c.rope.dim = c.head_dim;
  c.rope.interleaved = false;
  nlohmann::json d = rope_dict(f, &c.rope.theta);
  const std::string kind = rope_kind(d, f.where() + " rope_scaling");
  if (kind == "default") {
    c.rope.type = RopeType::DEFAULT;
  } else if (kind == "llama3") {
    JsonFields r(d, f.where() + " rope_scaling");
    c.rope.type = RopeType::LLAMA3;
    c.rope.factor = r.number("factor");
    c.rope.low_freq_factor = r.number("low_freq_factor");
    c.rope.high_freq_factor = r.number("high_freq_factor");
    c.rope.original_max_position_embeddings = r.integer("original_max_position_embeddings");
    MLABENCH_CHECK(c.rope.factor > 0 && c.rope.high_freq_factor > c.rope.low_freq_factor &&
                       c.rope.low_freq_factor > 0 && c.rope.original_max_position_embeddings > 0,
                   "{}: llama3 rope_scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
                   "original_max_position_embeddings > 0; found {}",
                   f.where(), d.dump());
  } else {
    MLABENCH_FAIL("{}: rope scaling type \"{}\" is not supported for llama; accepted values: {}", f.where(), kind,
                  accepted_list({"llama3", "default", "null (no scaling)"}));
  }
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
  c.model_type = f.has("model_type") ? f.string("model_type") : "";
  if (c.model_type == "deepseek_v2") {
    parse_deepseek_v2(f, c);
  } else if (c.model_type == "llama") {
    parse_llama(f, c);
  } else {
    MLABENCH_FAIL(
        "{}: field 'model_type' is \"{}\"; accepted values: deepseek_v2, llama. HINT: DeepSeek LLM 7B/67B "
        "checkpoints use model_type llama; DeepSeek-V3 (deepseek_v3) is not supported",
        where, c.model_type.empty() ? "(missing)" : c.model_type);
  }
  if (f.has("architectures")) {
    const auto& a = f.raw("architectures");
    MLABENCH_CHECK(a.is_array() && a.size() == 1 && a[0].is_string(),
                   "{}: field 'architectures' must be a list of one name, found {}", where, a.dump());
    const std::string name = a[0].get<std::string>();
    MLABENCH_CHECK(name == c.architecture, "{}: field 'architectures' is [\"{}\"] but model_type {} needs [\"{}\"]",
                   where, name, c.model_type, c.architecture);
  }
  return c;
}

ModelConfig load_config(const std::string& model_dir) {
  const std::filesystem::path p = std::filesystem::path(model_dir) / "config.json";
  std::ifstream in(p);
  MLABENCH_CHECK(in.good(),
                 "cannot read {}. HINT: --model must be a folder holding config.json (a hub checkpoint "
                 "or one of configs/*)",
                 p.string());
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::parse_error& e) {
    MLABENCH_FAIL("{} is not valid JSON: {}", p.string(), e.what());
  }
  return config_from_json(j, p.string());
}

std::string to_string(ScoringFunc f) { return f == ScoringFunc::SOFTMAX ? "softmax" : "sigmoid"; }
std::string to_string(AttentionKind k) { return k == AttentionKind::MLA ? "mla" : "gqa"; }
std::string to_string(FfnKind k) { return k == FfnKind::DENSE ? "dense" : "moe"; }

std::string to_string(TopkMethod m) { return m == TopkMethod::GREEDY ? "greedy" : "group_limited_greedy"; }
std::string to_string(RopeType t) {
  switch (t) {
    case RopeType::DEFAULT:
      return "default";
    case RopeType::YARN:
      return "yarn";
    case RopeType::LLAMA3:
      return "llama3";
  }
  return "?";
}

}  // namespace mlabench
