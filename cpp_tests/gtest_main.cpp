// The main of every C++ test program. It runs the tests as GoogleTest's own
// main does, then exits 77 when any test was skipped and none failed, so that
// ctest (SKIP_RETURN_CODE 77) reports a whole-program run with skipped tests
// as skipped, not as passed.
#include <gtest/gtest.h>

int main(int argc, char **argv) {
  testing::InitGoogleTest(&argc, argv);
  const int failed = RUN_ALL_TESTS();
  if (failed == 0 && testing::UnitTest::GetInstance()->skipped_test_count() > 0) return 77;
  return failed;
}
