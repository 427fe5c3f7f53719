// Fixture of the Device request-side tests: one request at a time as its wire layout, the used length
// and the tail's reserved bytes checked on every reply, the status returned as an int.
#pragma once

#include "vxlate/engine/device.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "support/virtio_iommu.h"

namespace vxlate::engine::device_test {

using test::attach_req;
using test::detach_req;
using test::encoded;
using test::map_req;
using test::probe_req;
using test::unmap_req;

inline constexpr uint32_t kRW = kMapFlagRead | kMapFlagWrite;
inline constexpr uint64_t kPage = 4096;

class DeviceTest : public ::testing::Test {
 protected:
  // Sends one request (its readable part as bytes); returns its status, or -1
  // when the used length was 0.
  int send_bytes(std::span<const uint8_t> readable, size_t writable_size = kTailSize) {
    std::vector<uint8_t> w(writable_size, test::kUnwritten);
    const uint32_t used = dev_->handle(readable, w);
    if (used == 0) {
      for (uint8_t b : w) EXPECT_EQ(b, test::kUnwritten) << "nothing may be written when used is 0";
      return -1;
    }
    EXPECT_EQ(used, writable_size);
    const wire::ReqTail tail = test::tail_of(w);
    EXPECT_EQ(tail.reserved[0], 0);  // tail.reserved zeroed
    EXPECT_EQ(tail.reserved[1], 0);
    EXPECT_EQ(tail.reserved[2], 0);
    last_ = w;
    return tail.status;
  }
  // Sends one request given as its wire layout.
  template <typename Req>
  int send(const Req& req, size_t writable_size = kTailSize) {
    return send_bytes(encoded(req), writable_size);
  }
  // map/unmap in 4 KiB units, inclusive page numbers as in the spec's examples.
  int map_pages(uint32_t d, uint64_t first, uint64_t last) {
    return send(map_req(d, first * kPage, (last + 1) * kPage - 1, 0x100000000 + first * kPage, kRW));
  }
  int unmap_pages(uint32_t d, uint64_t first, uint64_t last) {
    return send(unmap_req(d, first * kPage, (last + 1) * kPage - 1));
  }

  static constexpr int kOk = static_cast<int>(Status::kOk);
  static constexpr int kInval = static_cast<int>(Status::kInval);
  static constexpr int kRange = static_cast<int>(Status::kRange);
  static constexpr int kNoEnt = static_cast<int>(Status::kNoEnt);
  static constexpr int kNoMem = static_cast<int>(Status::kNoMem);

  Config cfg_;
  Rcu rcu_{2};
  std::unique_ptr<Device> dev_ = std::make_unique<Device>(cfg_, rcu_);
  std::vector<uint8_t> last_;
};

}  // namespace vxlate::engine::device_test
