// The main of every C++ test program. It runs the tests as GoogleTest's own
// main does, then
// - fails when nyxq still holds handles or strings the tests never released
//   (nyxq_live_handles): a leaked handle stays reachable from nyxq's registry,
//   so no leak checker would report it;
// - exits 77 when a test was skipped for want of a resource (SKIP_MISSING)
//   and none failed, so that ctest (SKIP_RETURN_CODE 77) reports such a
//   whole-program run as skipped, not as passed.
#include <gtest/gtest.h>

#include <cstdio>

#include "support.hpp"

int main(int argc, char **argv) {
  testing::InitGoogleTest(&argc, argv);
  const int failed = RUN_ALL_TESTS();
  size_t live = 0;
  if (nyxq_live_handles(&live) != NYXQ_OK || live != 0) {
    std::fprintf(stderr, "nyxq: %zu handles or strings still live at exit: the tests leaked them\n", live);
    return 1;
  }
  if (failed == 0 && nyxq_test::resource_missing) return 77;
  return failed;
}
