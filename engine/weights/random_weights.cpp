// --random-weights: a model from config.json alone, for running full-size shapes without the checkpoint.
// Counter-based (splitmix64 of seed, tensor-name hash and element index), so the values do not depend on thread
// count or fill order and a GPU can generate the same ones: the per-element generator is the CPU twin of the
// random_fill kernel (engine/kernels/twin/sampling.cpp), so host and device share one definition.
#include <map>

#include "core/check.h"
#include "engine/kernels/twin/twin.h"
#include "engine/weights/model_weights.h"

namespace mlabench {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

namespace {

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

}  // namespace

uint64_t random_weights_key(uint64_t seed, const std::string& tensor_name) {
  return splitmix64(seed ^ fnv1a64(tensor_name));
}

ModelWeights random_weight_sources(const ModelConfig& c, uint64_t seed) {
  ModelWeights w;
  std::map<std::string, TensorView> views;
  for (const auto& t : tensor_manifest(c, ExpertLayout::HUB)) {
    TensorView v;
    v.dtype = c.dtype;
    v.shape = t.shape;
    if (t.shape.size() == 1) {  // norms: ones, on the host (bind_weights reads them as float32)
      w.owned.emplace_back((v.nbytes() + 7) / 8);
      kernels::twin::random_fill(
          {.out = w.owned.back().data(), .out_type = c.dtype, .n = v.numel(), .key = 0, .fill_ones = true});
      v.data = w.owned.back().data();
    } else {
      v.random = RandomSource{.key = random_weights_key(seed, t.name)};
    }
    w.stored_bytes += v.nbytes();
    views[t.name] = v;
  }
  bind_weights(
      c, ExpertLayout::HUB, [&](const std::string& name) { return views.at(name); }, w);
  w.source = fmt::format("random (seed {})", seed);
  return w;
}

TensorView generate_random_view(const TensorView& v, std::vector<std::vector<uint64_t>>& owned) {
  if (!v.random) return v;
  TensorView out = v;
  owned.emplace_back((v.nbytes() + 7) / 8);
  kernels::twin::random_fill({.out = owned.back().data(),
                              .out_type = v.dtype,
                              .n = v.numel(),
                              .key = v.random->key,
                              .first = v.random->first,
                              .cols = v.random->cols,
                              .ld = v.random->ld});
  out.data = owned.back().data();
  out.random.reset();
  return out;
}

// The sources, every matrix generated on the host by the twin of the device kernel (so host and device give the
// same bits); a tied head stays a view of the embedding.
ModelWeights random_weights(const ModelConfig& c, uint64_t seed) {
  ModelWeights w = random_weight_sources(c, seed);
  for_each_matrix(w, [&w](TensorView& v) { v = generate_random_view(v, w.owned); });
  if (c.tie_word_embeddings) w.lm_head = w.embed;
  return w;
}

void for_each_matrix(ModelWeights& w, const std::function<void(TensorView&)>& f) {
  f(w.embed);
  f(w.lm_head);
  const auto mlp = [&](MlpWeights& m) { f(m.gate), f(m.up), f(m.down); };
  for (LayerWeights& L : w.layers) {
    for (TensorView* v : {&L.q_proj, &L.q_a_proj, &L.q_b_proj, &L.kv_a_proj, &L.kv_b_proj, &L.k_proj, &L.v_proj,
                          &L.o_proj, &L.router})
      f(*v);
    mlp(L.mlp);
    for (MlpWeights& e : L.experts) mlp(e);
    mlp(L.shared);
  }
}

}  // namespace mlabench
