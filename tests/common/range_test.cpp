#include "vxlate/common/range.h"

#include <gtest/gtest.h>

#include <cstdint>

#include "vxlate/common/status.h"

namespace vxlate {
namespace {

TEST(RangeLast, RejectsZeroAndWrap) {
  uint64_t last = 7;
  EXPECT_FALSE(range_last(0, 0, &last));
  EXPECT_FALSE(range_last(UINT64_MAX, 2, &last));
  EXPECT_FALSE(range_last(2, UINT64_MAX, &last));
  EXPECT_EQ(last, 7u);  // untouched on failure
}

TEST(RangeLast, AcceptsUpToTheTop) {
  uint64_t last = 0;
  ASSERT_TRUE(range_last(0, UINT64_MAX, &last));
  EXPECT_EQ(last, UINT64_MAX - 1);
  ASSERT_TRUE(range_last(UINT64_MAX, 1, &last));
  EXPECT_EQ(last, UINT64_MAX);
  ASSERT_TRUE(range_last(0x1000, 0x1000, &last));
  EXPECT_EQ(last, 0x1fffu);
}

TEST(Status, WireValuesAndNames) {
  EXPECT_EQ(static_cast<int>(Status::kOk), 0);
  EXPECT_EQ(static_cast<int>(Status::kNoMem), 8);
  EXPECT_STREQ(to_string(Status::kRange), "RANGE");
  EXPECT_STREQ(to_string(Status::kNoEnt), "NOENT");
  EXPECT_STREQ(to_string(static_cast<Status>(42)), "?");
}

}  // namespace
}  // namespace vxlate
