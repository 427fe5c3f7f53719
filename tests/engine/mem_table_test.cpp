// MemTable (engine/include/vxlate/engine/mem_table.h), reader side:
// MemTable::Cursor, a GPA queue's translations, against gpa_to_hva().
#include "vxlate/engine/mem_table.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "vxlate/common/rcu.h"

namespace vxlate::engine {
namespace {

// The cursor gives the results of gpa_to_hva() for every query: across
// regions (adjacent and with a hole between them), their boundaries, bad
// lengths, faults and full segment lists, and across set() of tables that
// move the same GPAs to other host addresses (a cursor that ignored the
// table it came from fails here). Some tables go by without the cursor
// translating anything, so that its memo is of a table freed since, whose
// address the current one may have taken. That case is what the version
// check is for; this test does not prove it is caught: with glibc the reused
// snapshot's region array is reused too and a stale memo reads the right
// values, and ASan's quarantine does not reuse addresses at all.
TEST(MemTableCursor, GivesTheResultsOfTheTable) {
  const std::vector<std::vector<MemRegion>> tables = {
      {{0x100000000, 0x100000, 0x7f0000000000}, {0x100100000, 0x100000, 0x7f1000000000}},
      {{0x100000000, 0x100000, 0x7f2000000000}, {0x100100000, 0x100000, 0x7f3000000000}},
      {{0x100000000, 0x80000, 0x7f4000000000}, {0x100100000, 0x100000, 0x7f5000000000}},  // hole
      {{0x100000000, 0x200000, 0x7f6000000000}},
  };
  Rcu rcu(1);
  MemTable mem(rcu);
  const uint32_t reader = rcu.register_reader();
  std::mt19937_64 rng(13);
  MemTable::Cursor cursor;
  size_t ok = 0, fault = 0, inval = 0;
  for (int round = 0; round < 48; ++round) {
    ASSERT_EQ(mem.set(tables[rng() % tables.size()]), Status::kOk);  // the reader is offline: set() waits for it
    if (rng() % 3 == 0) continue;  // a table the cursor never sees
    rcu.online(reader);
    for (int i = 0; i < 2000; ++i) {
      // Mostly near one address, as a queue's buffers are; sometimes anywhere
      // around the regions, at their boundaries or far away.
      uint64_t gpa = 0x100000000 + (rng() % 0x40) * 64;
      switch (rng() % 6) {
        case 0: gpa = 0x100000000 - 0x1000 + rng() % 0x202000; break;
        case 1: gpa = 0x100080000 - 64 + rng() % 128; break;
        case 2: gpa = 0x100100000 - 64 + rng() % 128; break;
        case 3: gpa = rng(); break;
        default: break;
      }
      const uint64_t len = rng() % 5 == 0 ? rng() % 3 * (uint64_t{1} << (rng() % 64)) : rng() % 256;
      const size_t cap = rng() % 8 == 0 ? rng() % 2 : 2;
      Segment want[2], got[2];
      size_t nwant = 7, ngot = 7;
      const Status sw = mem.gpa_to_hva(gpa, len, std::span<Segment>(want, cap), &nwant);
      const Status sg = cursor.gpa_to_hva(mem, gpa, len, std::span<Segment>(got, cap), &ngot);
      ASSERT_EQ(sg, sw) << std::hex << gpa << " len " << len << " cap " << cap;
      ASSERT_EQ(ngot, nwant);
      for (size_t k = 0; k < nwant; ++k) {
        ASSERT_EQ(got[k].addr, want[k].addr) << std::hex << gpa << " len " << len;
        ASSERT_EQ(got[k].len, want[k].len);
      }
      ok += sw == Status::kOk;
      fault += sw == Status::kFault;
      inval += sw == Status::kInval;
    }
    rcu.offline(reader);
  }
  rcu.unregister_reader(reader);
  EXPECT_GT(ok, 10000u);
  EXPECT_GT(fault, 1000u);
  EXPECT_GT(inval, 100u);
}

}  // namespace
}  // namespace vxlate::engine
