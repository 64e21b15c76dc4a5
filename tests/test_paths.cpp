// The paths CMake knows (test_util.h): in this one file, so the other test
// sources do not depend on where the checkout is.
#include "test_util.h"

namespace fer_test {
const char* source_dir() { return FER_SOURCE_DIR; }
const char* bin_dir() { return FER_BIN_DIR; }
}  // namespace fer_test
