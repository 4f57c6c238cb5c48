// Element types of stored tensors, and the exact conversions between them and float32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace mlabench {

enum class DType : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2 };

/// \brief Bytes per element.
size_t dtype_size(DType t);
/// \brief The safetensors spelling ("BF16", "F32", ...).
std::string_view dtype_name(DType t);
/// \brief Parses a safetensors dtype string; nullopt for an unknown one.
std::optional<DType> dtype_from_name(std::string_view name);
/// \brief "bfloat16" / "float16" / "float32" for those types, else the safetensors name.
std::string_view dtype_torch_name(DType t);
/// \brief Parses "bfloat16" / "float16" / "float32" (config.json spelling); nullopt otherwise.
std::optional<DType> dtype_from_torch_name(std::string_view name);

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/// Round to nearest even, NaN kept quiet (the rounding torch uses for .to(torch.bfloat16)).
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

/// \brief Converts n stored elements of type t (F32, F16 or BF16) to float32.
void convert_to_f32(DType t, const void* src, float* dst, size_t n);

}  // namespace mlabench
