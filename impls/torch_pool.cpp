// A CPU allocator that keeps freed blocks of up to 16 KiB by size and hands them out again, for torch-loop.
//
// torch's default CPU allocator asks glibc for every tensor's data with posix_memalign, whose aligned path
// does not use glibc's per-thread cache: at 2-4-1 a compiled step allocates a few tensors of a few dozen
// bytes, and each allocation and free costs more than the step's arithmetic. This one keeps freed blocks
// in a list per 64-byte size class. It changes no value: a tensor's data is uninitialised either way.
// pool_install() makes it torch's CPU allocator (remembering the one before), pool_uninstall() puts that
// one back; blocks freed after that still return here, and larger requests go to the remembered allocator.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace {

constexpr size_t kAlign = 64;    // torch's own CPU alignment (c10::gAlignment)
constexpr size_t kHeader = 64;   // before each block's data: its size class (keeps the data aligned)
constexpr size_t kStep = 64;     // size classes of 64, 128, ... bytes
constexpr size_t kClasses = 256; // up to 16 KiB: the loop's loss buffer (1,000 doubles) included
constexpr size_t kKeep = 1024;   // blocks kept per class; beyond that a freed block goes back to glibc

std::mutex lock;
std::vector<void*> kept[kClasses];
c10::Allocator* previous = nullptr;

void release(void* data) {
  if (!data) return;
  void* block = static_cast<char*>(data) - kHeader;
  {
    std::lock_guard<std::mutex> held(lock);
    auto& list = kept[*static_cast<size_t*>(block)];
    if (list.size() < kKeep) {
      list.push_back(block);
      return;
    }
  }
  std::free(block);
}

struct Pool final : c10::Allocator {
  c10::DataPtr allocate(size_t n) override {
    size_t k = n == 0 ? 0 : (n - 1) / kStep;
    if (k >= kClasses) return previous->allocate(n);
    void* block = nullptr;
    {
      std::lock_guard<std::mutex> held(lock);
      if (!kept[k].empty()) {
        block = kept[k].back();
        kept[k].pop_back();
      }
    }
    if (!block) {
      if (posix_memalign(&block, kAlign, kHeader + (k + 1) * kStep)) throw std::bad_alloc();
      *static_cast<size_t*>(block) = k;
    }
    void* data = static_cast<char*>(block) + kHeader;
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, size_t count) const override { default_copy_data(dest, src, count); }
};

Pool pool;

}  // namespace

// 0 when the pool is torch's CPU allocator afterwards (one registered at a higher priority would win).
extern "C" int pool_install() {
  if (c10::GetCPUAllocator() == &pool) return 0;
  previous = c10::GetCPUAllocator();
  c10::SetCPUAllocator(&pool, 0);
  return c10::GetCPUAllocator() == &pool ? 0 : 1;
}

// 0 when the allocator before pool_install() is back.
extern "C" int pool_uninstall() {
  if (c10::GetCPUAllocator() != &pool) return 0;
  c10::SetCPUAllocator(previous, 0);
  return c10::GetCPUAllocator() == previous ? 0 : 1;
}

// 1 while the pool is torch's CPU allocator.
extern "C" int pool_active() { return c10::GetCPUAllocator() == &pool ? 1 : 0; }
