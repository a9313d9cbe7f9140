// RecordVector<T>: the growable array a run's records are kept in (records.hpp).
//
// A run appends millions of rows (one per iteration per replica: 6.7 million, 750 MB, for a
// 32-replica, 160,000-request cost-model run). A std::vector grows by allocating a buffer
// twice the size and copying every row into it, so each row is written about twice and the
// process faults in twice the pages it keeps; on the cost-model executor that was about a
// tenth of the event loop's time. RecordVector grows with realloc instead: glibc serves a
// large block with mremap, which moves the block's pages to the larger mapping without
// copying or touching them (smaller blocks are copied, as a vector would). folly's fbvector
// does the same for relocatable types; the rows here are plain structs (trivially copyable),
// which is what makes moving them by realloc valid.
//
// The interface is the part of std::vector the records are used with: push_back, indexing,
// iteration over contiguous rows (data() for the HDF5 writer), resize, reserve.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <iterator>
#include <new>
#include <type_traits>
#include <utility>

namespace lorasched {

template <class T>
class RecordVector {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>,
                "RecordVector moves rows with realloc: they must be trivially copyable");

 public:
  using value_type = T;
  using size_type = size_t;
  using reference = T&;
  using const_reference = const T&;
  using iterator = T*;
  using const_iterator = const T*;

  RecordVector() = default;
  RecordVector(std::initializer_list<T> rows) { assign(rows.begin(), rows.end()); }
  template <class It>
  RecordVector(It first, It last) {
    assign(first, last);
  }
  RecordVector(const RecordVector& o) { assign(o.begin(), o.end()); }
  RecordVector(RecordVector&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        capacity_(std::exchange(o.capacity_, 0)) {}
  RecordVector& operator=(const RecordVector& o) {
    if (this != &o) assign(o.begin(), o.end());
    return *this;
  }
  RecordVector& operator=(RecordVector&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      capacity_ = std::exchange(o.capacity_, 0);
    }
    return *this;
  }
  RecordVector& operator=(std::initializer_list<T> rows) {
    assign(rows.begin(), rows.end());
    return *this;
  }
  ~RecordVector() { std::free(data_); }

  template <class It>
  void assign(It first, It last) {
    clear();
    if constexpr (std::is_base_of_v<std::random_access_iterator_tag,
                                    typename std::iterator_traits<It>::iterator_category>)
      reserve(static_cast<size_t>(std::distance(first, last)));
    for (; first != last; ++first) push_back(*first);
  }

  void push_back(const T& row) {
    if (size_ == capacity_) {
      const T copy = row;  // `row` may be one of the rows the growth moves
      grow(size_ + 1);
      ::new (static_cast<void*>(data_ + size_)) T(copy);
    } else {
      ::new (static_cast<void*>(data_ + size_)) T(row);
    }
    ++size_;
  }
  void pop_back() { --size_; }
  void clear() { size_ = 0; }
  void reserve(size_t n) {
    if (n > capacity_) reallocate(n);
  }
  // New rows are value-initialized (the records' defaults), as std::vector::resize does.
  void resize(size_t n) { resize(n, T{}); }
  void resize(size_t n, const T& value) {
    reserve(n);
    for (size_t i = size_; i < n; ++i) ::new (static_cast<void*>(data_ + i)) T(value);
    size_ = n;
  }

  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  bool empty() const { return size_ == 0; }
  T* data() { return data_; }
  const T* data() const { return data_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T& front() { return data_[0]; }
  const T& front() const { return data_[0]; }
  T& back() { return data_[size_ - 1]; }
  const T& back() const { return data_[size_ - 1]; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }

 private:
  void grow(size_t need) { reallocate(std::max({need, 2 * capacity_, size_t{16}})); }
  void reallocate(size_t capacity) {
    if (capacity > SIZE_MAX / sizeof(T)) throw std::bad_alloc();
    void* p = std::realloc(static_cast<void*>(data_), capacity * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    data_ = static_cast<T*>(p);
    capacity_ = capacity;
  }

  T* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace lorasched
