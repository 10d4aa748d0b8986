// doctest's main(), compiled once (target mg_test_main) and linked into every tests/*_test executable.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
