// vxlate/common/le.h: little-endian wire fields.
//
// Every wire layout vxlate speaks (virtio-iommu requests and events, virtio
// rings, vhost-user messages) is a struct of these fields, defined once and
// pinned with static_assert(offsetof/sizeof). A field is its bytes (alignment
// 1), so a layout can be decoded from or encoded into any byte buffer, aligned
// or not, with one memcpy; get()/set() convert to and from host order. vxlate
// builds on little-endian hosts only (checked below), where the conversion is
// the identity and compiles to a plain load or store.
//
// decode<T>(bytes) and encode(bytes, value) move a whole layout between a
// struct and a buffer that is at least sizeof(T) long (the caller checks the
// length: that check is the protocol's, e.g. "too short for its struct").
//
// Thread safety: value types and pure functions; safe from any thread.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

namespace vxlate {

static_assert(std::endian::native == std::endian::little, "vxlate reads little-endian wire fields in place");

template <typename T>
class Le {
  static_assert(std::is_unsigned_v<T>);

 public:
  constexpr Le() = default;
  T get() const noexcept {
    T v;
    std::memcpy(&v, bytes_, sizeof v);
    return v;
  }
  void set(T v) noexcept { std::memcpy(bytes_, &v, sizeof v); }

 private:
  uint8_t bytes_[sizeof(T)] = {};
};
using Le16 = Le<uint16_t>;
using Le32 = Le<uint32_t>;
using Le64 = Le<uint64_t>;
static_assert(sizeof(Le64) == 8 && alignof(Le64) == 1);

// A whole layout out of `bytes`; the caller checked bytes.size() >= sizeof(T).
template <typename T>
T decode(std::span<const uint8_t> bytes) noexcept {
  static_assert(std::is_trivially_copyable_v<T> && alignof(T) == 1);
  T v;
  std::memcpy(&v, bytes.data(), sizeof v);
  return v;
}

// A whole layout into `bytes`; the caller checked bytes.size() >= sizeof(T).
template <typename T>
void encode(std::span<uint8_t> bytes, const T& v) noexcept {
  static_assert(std::is_trivially_copyable_v<T> && alignof(T) == 1);
  std::memcpy(bytes.data(), &v, sizeof v);
}

}  // namespace vxlate
