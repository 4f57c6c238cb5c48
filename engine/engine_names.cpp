// The names of EngineOptions' enums (mlabench/engine.h): what the CLI accepts and what results.json and the
// bench JSON record.
#include <array>
#include <charconv>
#include <utility>

#include "core/check.h"
#include "mlabench/engine.h"

namespace mlabench {

namespace {

constexpr std::array<std::pair<Device, std::string_view>, 2> kDevices{{{Device::CPU, "cpu"}, {Device::CUDA, "cuda"}}};
constexpr std::array<std::pair<MlaAttention, std::string_view>, 3> kMlaAttention{
    {{MlaAttention::AUTO, "auto"}, {MlaAttention::DECOMPRESSED, "decompressed"}, {MlaAttention::ABSORBED, "absorbed"}}};
constexpr std::array<std::pair<Precision, std::string_view>, 2> kPrecisions{
    {{Precision::NATIVE, "native"}, {Precision::FLOAT32, "f32"}}};
constexpr std::array<std::pair<WeightsDtype, std::string_view>, 2> kWeightsDtypes{
    {{WeightsDtype::AUTO, "auto"}, {WeightsDtype::FP8, "fp8"}}};
constexpr std::array<std::pair<KvCacheDtype, std::string_view>, 2> kKvCacheDtypes{
    {{KvCacheDtype::AUTO, "auto"}, {KvCacheDtype::FP8, "fp8"}}};

template <class E, size_t N>
std::string name_of(const std::array<std::pair<E, std::string_view>, N>& names, E value) {
  for (const auto& [v, name] : names)
    if (v == value) return std::string(name);
  return "?";  // not reached: every enumerator has a name
}

template <class E, size_t N>
std::optional<E> value_of(const std::array<std::pair<E, std::string_view>, N>& names, std::string_view name) {
  for (const auto& [v, n] : names)
    if (n == name) return v;
  return std::nullopt;
}

}  // namespace

std::string to_string(Device d) { return name_of(kDevices, d); }
std::string to_string(MlaAttention m) { return name_of(kMlaAttention, m); }
std::string to_string(Precision p) { return name_of(kPrecisions, p); }
std::string to_string(WeightsDtype w) { return name_of(kWeightsDtypes, w); }
std::string to_string(KvCacheDtype k) { return name_of(kKvCacheDtypes, k); }
std::optional<Device> device_from_name(std::string_view name) { return value_of(kDevices, name); }
std::optional<MlaAttention> mla_attention_from_name(std::string_view name) { return value_of(kMlaAttention, name); }
std::optional<Precision> precision_from_name(std::string_view name) { return value_of(kPrecisions, name); }
std::optional<WeightsDtype> weights_dtype_from_name(std::string_view name) { return value_of(kWeightsDtypes, name); }
std::optional<KvCacheDtype> kv_cache_dtype_from_name(std::string_view name) { return value_of(kKvCacheDtypes, name); }

std::optional<DeviceSpec> device_spec_from_name(std::string_view name) {
  if (const auto d = device_from_name(name)) return DeviceSpec{.device = *d, .index = 0};
  if (!name.starts_with("cuda:")) return std::nullopt;
  const std::string_view digits = name.substr(5);
  int index = -1;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || index < 0 ||
      digits.front() == '+')
    return std::nullopt;
  return DeviceSpec{.device = Device::CUDA, .index = index};
}

void check_cuda_device_index(int index, int count) {
  MLABENCH_CHECK(index >= 0 && index < count,
                 "--device cuda:{}: this process sees {} CUDA device(s), numbered 0 .. {}. HINT: pick an index below "
                 "{} (nvidia-smi lists the GPUs; CUDA_VISIBLE_DEVICES renumbers the visible ones from 0)",
                 index, count, count - 1, count);
}

}  // namespace mlabench
