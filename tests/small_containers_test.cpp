// The allocation-free building blocks of the hot path: SmallVector (shapes, strides), the
// small-object pool, and the pooled callable that holds backward formulas.
#include <doctest/doctest.h>

#include <memory>
#include <stdexcept>
#include <vector>

#include "../autograd/backward_fn.h"
#include "../tensor/small_object_pool.h"
#include "../tensor/small_vector.h"

using mg::SmallVector;

TEST_SUITE("small containers") {
  TEST_CASE("SmallVector behaves like std::vector inside and beyond its inline capacity") {
    SmallVector<int64_t, 3> v{1, 2};
    CHECK(v.size() == 2);
    v.push_back(3);
    v.push_back(4);  // leaves the inline storage
    CHECK(v.capacity() >= 4);
    CHECK(v == std::vector<int64_t>{1, 2, 3, 4});
    v.insert(v.begin() + 1, int64_t{9});
    CHECK(v == std::vector<int64_t>{1, 9, 2, 3, 4});
    v.insert(v.end(), v.begin(), v.begin() + 2);  // a range from inside itself
    CHECK(v == std::vector<int64_t>{1, 9, 2, 3, 4, 1, 9});
    v.erase(v.begin(), v.begin() + 3);
    CHECK(v == std::vector<int64_t>{3, 4, 1, 9});
    v.insert(v.begin(), 2, int64_t{0});
    CHECK(v == std::vector<int64_t>{0, 0, 3, 4, 1, 9});
    v.resize(2);
    CHECK(v.back() == 0);

    SmallVector<int64_t, 3> heap{1, 2, 3, 4, 5};
    SmallVector<int64_t, 3> moved(std::move(heap));
    CHECK(moved.size() == 5);
    CHECK(heap.empty());  // NOLINT(bugprone-use-after-move): a moved-from vector is empty
    SmallVector<int64_t, 3> inline_one{7};
    SmallVector<int64_t, 3> moved_inline(std::move(inline_one));
    CHECK(moved_inline == std::vector<int64_t>{7});
    moved = moved_inline;  // heap-backed receives an inline one
    CHECK(moved == std::vector<int64_t>{7});

    const std::vector<int64_t> as_vector = SmallVector<int64_t, 2>{5, 6, 7};
    CHECK(as_vector == std::vector<int64_t>{5, 6, 7});
    CHECK(SmallVector<int64_t, 2>(3, 1) == std::vector<int64_t>{1, 1, 1});
    CHECK(SmallVector<int64_t, 2>{1, 2} < SmallVector<int64_t, 2>{1, 3});
    const SmallVector<int64_t, 2> none;
    CHECK_THROWS_AS(none.at(0), std::out_of_range);
  }

  TEST_CASE("the small-object pool recycles blocks of a size class") {
    void* a = mg::pool::allocate(40);
    mg::pool::deallocate(a, 40);
    void* b = mg::pool::allocate(60);  // same 64-byte class: the block comes back
    if (mg::pool::recycles_blocks()) CHECK(b == a);
    CHECK(b != nullptr);
    mg::pool::deallocate(b, 60);
    void* big = mg::pool::allocate(mg::pool::kMaxPooledBytes + 1);  // beyond the pool: malloc
    CHECK(big != nullptr);
    mg::pool::deallocate(big, mg::pool::kMaxPooledBytes + 1);
  }

  TEST_CASE("a pooled function calls and then destroys its captures") {
    auto counter = std::make_shared<int>(0);
    {
      mg::PooledFunction<int, int> f([counter](const int& x) { return ++*counter + x; });
      CHECK(counter.use_count() == 2);
      CHECK(f(10) == 11);
      mg::PooledFunction<int, int> g(std::move(f));
      CHECK_FALSE(static_cast<bool>(f));  // NOLINT(bugprone-use-after-move)
      CHECK(g(10) == 12);
      CHECK(counter.use_count() == 2);
    }
    CHECK(counter.use_count() == 1);
  }

}  // TEST_SUITE
