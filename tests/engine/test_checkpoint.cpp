// Checkpoint folders: sharded vs single file and fused vs hub expert layouts load to identical logits; a
// checkpoint that disagrees with its config is refused naming the tensor and both shapes; random weights.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "core/check.h"
#include "engine/model/cpu_model.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

using Tensors = std::vector<std::pair<std::string, TensorView>>;

Tensors all_tensors(const Checkpoint& ck) {
  Tensors out;
  for (const auto& n : ck.names()) out.emplace_back(n, ck.get(n));
  return out;
}

void copy_config(const std::string& from, const std::string& to_dir) {
  std::filesystem::copy_file(from + "/config.json", to_dir + "/config.json");
}

std::vector<float> logits_of(const std::string& dir, const std::vector<int32_t>& tokens) {
  ModelConfig c = load_config(dir);
  auto m = make_cpu_model(c, load_weights(c, dir), MlaAttention::AUTO);
  std::vector<float> out(tokens.size() * static_cast<size_t>(c.vocab_size));
  CpuKvCache cache = m->new_cache();
  m->forward(tokens, cache, out.data(), false);
  return out;
}

void expect_load_error(const std::string& dir, std::initializer_list<std::string> parts) {
  test::expect_error_with([&] { load_weights(load_config(dir), dir); }, parts, dir);
}

// Writes `tensors` as n_shards files with a model.safetensors.index.json.
void write_sharded(const std::string& dir, const Tensors& tensors, size_t n_shards) {
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  for (size_t s = 0; s < n_shards; ++s) {
    Tensors part;
    const std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, n_shards);
    for (size_t i = s; i < tensors.size(); i += n_shards) {
      part.push_back(tensors[i]);
      index["weight_map"][tensors[i].first] = file;
    }
    safetensors_write(dir + "/" + file, part);
  }
  std::ofstream(dir + "/model.safetensors.index.json") << index.dump(1);
}

const std::vector<int32_t>& tokens_of(const std::string& fixture) {
  static std::map<std::string, std::vector<int32_t>> cache;
  auto& t = cache[fixture];
  if (t.empty()) t = test::load_reference(test::fixture_dir(fixture)).tokens;
  return t;
}

TEST(Checkpoint, ShardedAndSingleFileLoadToTheSameLogits) {
  // transformers' own sharded output -> one file.
  const std::string sharded = test::fixture_dir("dsv2-tf5-saved");
  ASSERT_TRUE(std::filesystem::exists(sharded + "/model.safetensors.index.json"));
  test::TempDir single;
  copy_config(sharded, single.path());
  auto ck = Checkpoint::open(sharded);
  EXPECT_TRUE(ck->sharded());
  EXPECT_EQ(ck->files().size(), 5u);
  safetensors_write(single.file("model.safetensors"), all_tensors(*ck));
  EXPECT_EQ(logits_of(sharded, tokens_of("dsv2-tf5-saved")), logits_of(single.path(), tokens_of("dsv2-tf5-saved")));

  // One file -> three shards of our own.
  const std::string one = test::fixture_dir("llama-gqa-llama3-tied");
  test::TempDir three;
  copy_config(one, three.path());
  const auto one_ck = Checkpoint::open(one);
  write_sharded(three.path(), all_tensors(*one_ck), 3);
  EXPECT_TRUE(Checkpoint::open(three.path())->sharded());
  EXPECT_EQ(logits_of(one, tokens_of("llama-gqa-llama3-tied")),
            logits_of(three.path(), tokens_of("llama-gqa-llama3-tied")));
}

TEST(Checkpoint, FusedAndHubExpertLayoutsLoadToTheSameLogits) {
  // hub -> fused: per layer, gate_up_proj [E, 2I, H] (gate rows then up rows) and down_proj [E, H, I].
  const std::string hub = test::fixture_dir("dsv2-qlora-grouped-yarn");
  const ModelConfig c = load_config(hub);
  auto ck = Checkpoint::open(hub);
  EXPECT_EQ(detect_expert_layout(*ck), ExpertLayout::HUB);
  Tensors fused;
  std::vector<std::vector<char>> bufs;
  for (const auto& [name, v] : all_tensors(*ck))
    if (name.find(".mlp.experts.") == std::string::npos) fused.emplace_back(name, v);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    if (!c.is_moe_layer(l)) continue;
    const std::string p = fmt::format("model.layers.{}.mlp.experts.", l);
    const size_t expert_bytes = ck->get(p + "0.gate_proj.weight").nbytes();
    std::vector<char> gu, dn;
    for (int64_t e = 0; e < c.n_routed_experts; ++e) {
      for (const char* part : {"gate_proj", "up_proj"}) {
        const TensorView t = ck->get(fmt::format("{}{}.{}.weight", p, e, part));
        gu.insert(gu.end(), static_cast<const char*>(t.data), static_cast<const char*>(t.data) + expert_bytes);
      }
      const TensorView d = ck->get(fmt::format("{}{}.down_proj.weight", p, e));
      dn.insert(dn.end(), static_cast<const char*>(d.data), static_cast<const char*>(d.data) + d.nbytes());
    }
    bufs.push_back(std::move(gu));
    fused.emplace_back(
        p + "gate_up_proj",
        TensorView{c.dtype, {c.n_routed_experts, 2 * c.moe_intermediate_size, c.hidden_size}, bufs.back().data()});
    bufs.push_back(std::move(dn));
    fused.emplace_back(
        p + "down_proj",
        TensorView{c.dtype, {c.n_routed_experts, c.hidden_size, c.moe_intermediate_size}, bufs.back().data()});
  }
  test::TempDir out;
  copy_config(hub, out.path());
  safetensors_write(out.file("model.safetensors"), fused);
  EXPECT_EQ(detect_expert_layout(*Checkpoint::open(out.path())), ExpertLayout::FUSED);
  EXPECT_EQ(logits_of(hub, tokens_of("dsv2-qlora-grouped-yarn")),
            logits_of(out.path(), tokens_of("dsv2-qlora-grouped-yarn")));

  // The fused fixture transformers itself verified against its reference (test_reference_logits) is fused.
  EXPECT_EQ(detect_expert_layout(*Checkpoint::open(test::fixture_dir("dsv2-fused-experts"))), ExpertLayout::FUSED);
}

TEST(Checkpoint, MissingUnexpectedAndMisshapedTensorsAreNamed) {
  const std::string src = test::fixture_dir("llama-mha");
  auto ck = Checkpoint::open(src);
  const Tensors base = all_tensors(*ck);

  test::TempDir missing;
  copy_config(src, missing.path());
  Tensors t = base;
  std::erase_if(t, [](const auto& p) { return p.first == "model.layers.1.self_attn.k_proj.weight"; });
  safetensors_write(missing.file("model.safetensors"), t);
  expect_load_error(missing.path(), {"no tensor 'model.layers.1.self_attn.k_proj.weight'", "expected shape [64, 64]"});

  test::TempDir extra;
  copy_config(src, extra.path());
  t = base;
  t.emplace_back("model.layers.3.input_layernorm.weight", base[0].second);
  safetensors_write(extra.file("model.safetensors"), t);
  expect_load_error(extra.path(), {"does not account for", "'model.layers.3.input_layernorm.weight'"});

  test::TempDir shape;
  copy_config(src, shape.path());
  t = base;
  for (auto& [name, v] : t)
    if (name == "model.layers.0.mlp.up_proj.weight") v.shape = {56, 128};  // same bytes, wrong shape
  safetensors_write(shape.file("model.safetensors"), t);
  expect_load_error(shape.path(), {"'model.layers.0.mlp.up_proj.weight'", "has shape [56, 128]", "implies [112, 64]"});

  test::TempDir dtype;
  copy_config(src, dtype.path());
  t = base;
  for (auto& [name, v] : t)
    if (name == "model.norm.weight") v = TensorView{DType::I16, v.shape, v.data};
  safetensors_write(dtype.file("model.safetensors"), t);
  expect_load_error(dtype.path(), {"'model.norm.weight'", "I16", "BF16, F16 or F32"});
}

TEST(Checkpoint, FolderProblems) {
  test::TempDir none;
  copy_config(test::fixture_dir("llama-mha"), none.path());
  expect_load_error(none.path(), {"no weights", "--random-weights"});

  // Two unindexed files: refused, not guessed.
  test::TempDir two;
  copy_config(test::fixture_dir("llama-mha"), two.path());
  const auto ck = Checkpoint::open(test::fixture_dir("llama-mha"));  // the views below point into its mmap
  const Tensors base = all_tensors(*ck);
  safetensors_write(two.file("a.safetensors"), Tensors(base.begin(), base.begin() + 3));
  safetensors_write(two.file("b.safetensors"), Tensors(base.begin() + 3, base.end()));
  expect_load_error(two.path(), {"2 .safetensors files", "index"});

  // Index naming a shard that is not there, or a tensor its shard lacks.
  test::TempDir idx;
  copy_config(test::fixture_dir("llama-mha"), idx.path());
  write_sharded(idx.path(), base, 2);
  std::filesystem::remove(idx.file("model-00002-of-00002.safetensors"));
  expect_load_error(idx.path(), {"model-00002-of-00002.safetensors", "missing"});
  write_sharded(idx.path(), base, 2);
  auto j = test::read_json(idx.file("model.safetensors.index.json"));
  j["weight_map"]["model.norm.weight"] = j["weight_map"]["model.norm.weight"] == "model-00001-of-00002.safetensors"
                                             ? "model-00002-of-00002.safetensors"
                                             : "model-00001-of-00002.safetensors";
  std::ofstream(idx.file("model.safetensors.index.json")) << j.dump();
  expect_load_error(idx.path(), {"'model.norm.weight'", "no such tensor"});
  std::ofstream(idx.file("model.safetensors.index.json")) << R"({"weight_map": {"x": "../escape.safetensors"}})";
  expect_load_error(idx.path(), {"plain file name"});
  // An empty shard name (the folder itself), "." and ".." are not file names either; a shard that is a FIFO is
  // refused without waiting for a writer.
  for (const char* name : {"", ".", ".."}) {
    std::ofstream(idx.file("model.safetensors.index.json")) << R"({"weight_map": {"x": ")" << name << R"("}})";
    expect_load_error(idx.path(), {"plain file name"});
  }
  ASSERT_EQ(::mkfifo(idx.file("fifo.safetensors").c_str(), 0600), 0);
  std::ofstream(idx.file("model.safetensors.index.json")) << R"({"weight_map": {"x": "fifo.safetensors"}})";
  expect_load_error(idx.path(), {"fifo.safetensors is a FIFO (named pipe), not a safetensors file"});
}

// safetensors promises no alignment: a header of odd length puts every tensor at an odd address. The loader
// must copy such tensors rather than read them misaligned (UBSan would stop the test otherwise).
TEST(Checkpoint, MisalignedTensorsAreRealigned) {
  const std::string src = test::fixture_dir("llama-mha");
  test::TempDir out;
  copy_config(src, out.path());
  auto ck = Checkpoint::open(src);
  const Tensors base = all_tensors(*ck);
  nlohmann::ordered_json h;
  uint64_t off = 0;
  for (const auto& [n, v] : base) {
    h[n] = {{"dtype", std::string(dtype_name(v.dtype))}, {"shape", v.shape}, {"data_offsets", {off, off + v.nbytes()}}};
    off += v.nbytes();
  }
  std::string header = h.dump();
  header.append((8 - (8 + header.size()) % 8) % 8 + 1, ' ');  // data starts 1 byte past an 8-byte boundary
  std::ofstream f(out.file("model.safetensors"), std::ios::binary);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) f.put(static_cast<char>((n >> (8 * i)) & 0xff));
  f << header;
  for (const auto& [name, v] : base)
    f.write(static_cast<const char*>(v.data), static_cast<std::streamsize>(v.nbytes()));
  f.close();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(Checkpoint::open(out.path())->get("model.norm.weight").data) % 2, 1u);
  EXPECT_EQ(logits_of(src, tokens_of("llama-mha")), logits_of(out.path(), tokens_of("llama-mha")));
}

// moe_layer_freq (remote-code rule; transformers 5.17 ignores the field): 3 layers with first_k_dense_replace 1
// and moe_layer_freq 2 are dense, dense, MoE, the same model as first_k_dense_replace 2 with frequency 1.
TEST(Checkpoint, MoeLayerFrequencySelectsTheSameLayersAsItsDenseEquivalent) {
  const std::string src = test::fixture_dir("dsv2-lite-greedy-yarn");  // 4 layers: 0, 1 dense; 2, 3 MoE
  const auto ck = Checkpoint::open(src);
  Tensors t = all_tensors(*ck);
  std::erase_if(t, [](const auto& p) { return p.first.starts_with("model.layers.3."); });
  nlohmann::json cfg = test::read_json(src + "/config.json");
  cfg["num_hidden_layers"] = 3;
  test::TempDir a, b;
  cfg["first_k_dense_replace"] = 2;
  cfg["moe_layer_freq"] = 1;
  std::ofstream(a.file("config.json")) << cfg.dump();
  cfg["first_k_dense_replace"] = 1;
  cfg["moe_layer_freq"] = 2;
  std::ofstream(b.file("config.json")) << cfg.dump();
  safetensors_write(a.file("model.safetensors"), t);
  safetensors_write(b.file("model.safetensors"), t);
  const auto la = logits_of(a.path(), tokens_of("dsv2-lite-greedy-yarn"));
  EXPECT_EQ(la, logits_of(b.path(), tokens_of("dsv2-lite-greedy-yarn")));
  cfg["moe_layer_freq"] = 3;  // layer 2 would then be dense: its dense MLP is missing from the weights
  std::ofstream(b.file("config.json")) << cfg.dump();
  expect_load_error(b.path(), {"no tensor 'model.layers.2.mlp.gate_proj.weight'", "expected shape [96, 64]"});
}

TEST(RandomWeights, DeterministicFromConfigAlone) {
  const ModelConfig c = load_config(test::default_model_dir());
  const ModelWeights a = random_weights(c, 5), b = random_weights(c, 5), d = random_weights(c, 6);
  EXPECT_EQ(a.layers.size(), 4u);
  EXPECT_EQ(a.embed.dtype, DType::BF16) << "random weights use the config's dtype";
  EXPECT_EQ(std::memcmp(a.embed.data, b.embed.data, a.embed.nbytes()), 0);
  EXPECT_NE(std::memcmp(a.embed.data, d.embed.data, a.embed.nbytes()), 0);
  EXPECT_EQ(a.final_norm, std::vector<float>(static_cast<size_t>(c.hidden_size), 1.0f));
  // Uniform with standard deviation 0.02.
  std::vector<float> v(static_cast<size_t>(a.lm_head.numel()));
  convert_to_f32(a.lm_head.dtype, a.lm_head.data, v.data(), v.size());
  double sum = 0, sq = 0, mx = 0;
  for (float x : v) {
    sum += x;
    sq += static_cast<double>(x) * x;
    mx = std::max(mx, std::fabs(static_cast<double>(x)));
  }
  EXPECT_NEAR(sum / static_cast<double>(v.size()), 0.0, 1e-3);
  EXPECT_NEAR(std::sqrt(sq / static_cast<double>(v.size())), 0.02, 5e-4);
  EXPECT_LE(mx, std::sqrt(3.0) * 0.02 + 1e-3);
}

}  // namespace
}  // namespace mlabench
