#pragma once
// A vector of trivially copyable values that keeps its first N elements inside the object.
// Shapes and strides are created for every tensor, view and kernel call; with std::vector each
// one was a heap allocation, which made malloc the largest single cost of a small op. Tensors
// rarely have more than N dims, so this keeps the hot path free of heap traffic while keeping
// std::vector's interface (and conversions to and from it) for everything else.
#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <vector>

namespace mg {

template <typename T, std::size_t N>
class SmallVector {
  static_assert(std::is_trivially_copyable_v<T>, "SmallVector holds trivially copyable values only");

 public:
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using reference = T&;
  using const_reference = const T&;
  using pointer = T*;
  using const_pointer = const T*;
  using iterator = T*;
  using const_iterator = const T*;
  using reverse_iterator = std::reverse_iterator<iterator>;
  using const_reverse_iterator = std::reverse_iterator<const_iterator>;

  SmallVector() noexcept {}  // NOLINT: the inline elements stay uninitialised until used
  explicit SmallVector(size_type n) { resize(n); }
  SmallVector(size_type n, const T& value) { assign(n, value); }
  SmallVector(std::initializer_list<T> values) { assign(values.begin(), values.end()); }
  template <typename It, typename = typename std::iterator_traits<It>::iterator_category>
  SmallVector(It first, It last) {
    assign(first, last);
  }
  SmallVector(const std::vector<T>& values) { assign(values.begin(), values.end()); }  // NOLINT: implicit on purpose
  SmallVector(const SmallVector& other) { assign(other.begin(), other.end()); }
  SmallVector(SmallVector&& other) noexcept { steal(other); }
  ~SmallVector() { release(); }

  SmallVector& operator=(const SmallVector& other) {
    if (this != &other) assign(other.begin(), other.end());
    return *this;
  }
  SmallVector& operator=(SmallVector&& other) noexcept {
    if (this != &other) {
      release();
      steal(other);
    }
    return *this;
  }
  SmallVector& operator=(std::initializer_list<T> values) {
    assign(values.begin(), values.end());
    return *this;
  }

  operator std::vector<T>() const { return std::vector<T>(begin(), end()); }  // NOLINT: implicit on purpose

  void assign(size_type n, const T& value) {
    clear();
    resize(n, value);
  }
  template <typename It>
  void assign(It first, It last) {
    if constexpr (std::is_pointer_v<It>) {
      // Copying another vector's elements: one memcpy, no staging copy.
      const auto n = static_cast<size_type>(last - first);
      if (n > capacity_) {
        release();
        grow_to(n);
      }
      if (n > 0) std::memmove(data_, first, n * sizeof(T));
      size_ = n;
    } else {
      clear();
      insert(end(), first, last);
    }
  }

  size_type size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_type capacity() const { return capacity_; }
  T* data() { return data_; }
  const T* data() const { return data_; }

  T& operator[](size_type i) { return data_[i]; }
  const T& operator[](size_type i) const { return data_[i]; }
  T& at(size_type i) {
    if (i >= size_) throw std::out_of_range("SmallVector::at");
    return data_[i];
  }
  const T& at(size_type i) const {
    if (i >= size_) throw std::out_of_range("SmallVector::at");
    return data_[i];
  }
  T& front() { return data_[0]; }
  const T& front() const { return data_[0]; }
  T& back() { return data_[size_ - 1]; }
  const T& back() const { return data_[size_ - 1]; }

  iterator begin() { return data_; }
  iterator end() { return data_ + size_; }
  const_iterator begin() const { return data_; }
  const_iterator end() const { return data_ + size_; }
  const_iterator cbegin() const { return data_; }
  const_iterator cend() const { return data_ + size_; }
  reverse_iterator rbegin() { return reverse_iterator(end()); }
  reverse_iterator rend() { return reverse_iterator(begin()); }
  const_reverse_iterator rbegin() const { return const_reverse_iterator(end()); }
  const_reverse_iterator rend() const { return const_reverse_iterator(begin()); }

  void reserve(size_type n) {
    if (n > capacity_) grow_to(n);
  }
  void clear() { size_ = 0; }
  void resize(size_type n) { resize(n, T()); }
  void resize(size_type n, const T& value) {
    reserve(n);
    for (size_type i = size_; i < n; ++i) data_[i] = value;
    size_ = n;
  }
  void push_back(const T& value) {
    if (size_ == capacity_) {
      const T copy = value;  // value may live in this vector
      grow_to(capacity_ * 2);
      data_[size_++] = copy;
      return;
    }
    data_[size_++] = value;
  }
  T& emplace_back(const T& value) {
    push_back(value);
    return back();
  }
  void pop_back() { --size_; }

  iterator insert(const_iterator pos, const T& value) { return insert(pos, size_type{1}, value); }
  iterator insert(const_iterator pos, size_type n, const T& value) {
    const size_type at_index = static_cast<size_type>(pos - data_);
    const T copy = value;
    open_gap(at_index, n);
    for (size_type i = 0; i < n; ++i) data_[at_index + i] = copy;
    return data_ + at_index;
  }
  template <typename It, typename = typename std::iterator_traits<It>::iterator_category>
  iterator insert(const_iterator pos, It first, It last) {
    const size_type at_index = static_cast<size_type>(pos - data_);
    // Copy first: the range may point into this vector.
    SmallVector<T, N> values;
    for (; first != last; ++first) values.push_back(static_cast<T>(*first));
    open_gap(at_index, values.size());
    if (!values.empty()) std::memcpy(data_ + at_index, values.data(), values.size() * sizeof(T));
    return data_ + at_index;
  }
  iterator insert(const_iterator pos, std::initializer_list<T> values) {
    return insert(pos, values.begin(), values.end());
  }
  iterator erase(const_iterator pos) { return erase(pos, pos + 1); }
  iterator erase(const_iterator first, const_iterator last) {
    const size_type from = static_cast<size_type>(first - data_);
    const size_type count = static_cast<size_type>(last - first);
    std::memmove(data_ + from, data_ + from + count, (size_ - from - count) * sizeof(T));
    size_ -= count;
    return data_ + from;
  }

  friend bool operator==(const SmallVector& a, const SmallVector& b) {
    return a.size_ == b.size_ && std::equal(a.begin(), a.end(), b.begin());
  }
  friend bool operator<(const SmallVector& a, const SmallVector& b) {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
  }
  friend bool operator==(const SmallVector& a, const std::vector<T>& b) {
    return a.size_ == b.size() && std::equal(a.begin(), a.end(), b.begin());
  }

 private:
  bool on_heap() const { return data_ != inline_; }

  void grow_to(size_type n) {
    n = std::max(n, N);
    T* fresh = static_cast<T*>(std::malloc(n * sizeof(T)));
    if (fresh == nullptr) throw std::bad_alloc();
    if (size_ > 0) std::memcpy(fresh, data_, size_ * sizeof(T));
    if (on_heap()) std::free(data_);
    data_ = fresh;
    capacity_ = n;
  }
  void open_gap(size_type at_index, size_type n) {
    if (size_ + n > capacity_) grow_to(std::max(size_ + n, capacity_ * 2));
    std::memmove(data_ + at_index + n, data_ + at_index, (size_ - at_index) * sizeof(T));
    size_ += n;
  }
  void release() {
    if (on_heap()) std::free(data_);
    data_ = inline_;
    size_ = 0;
    capacity_ = N;
  }
  void steal(SmallVector& other) {
    if (other.on_heap()) {
      data_ = other.data_;
      size_ = other.size_;
      capacity_ = other.capacity_;
      other.data_ = other.inline_;
      other.size_ = 0;
      other.capacity_ = N;
    } else {
      data_ = inline_;
      capacity_ = N;
      size_ = other.size_;
      // min(): lets the compiler see the copy stays inside inline_ (-Warray-bounds at -O1).
      if (size_ > 0) std::memcpy(inline_, other.inline_, std::min(size_, N) * sizeof(T));
      other.size_ = 0;
    }
  }

  T* data_ = inline_;
  size_type size_ = 0;
  size_type capacity_ = N;
  T inline_[N];
};

}  // namespace mg
