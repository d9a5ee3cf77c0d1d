// The mmap backend's files: segment files registered with their length, written through
// shared read-write mappings of small windows, never mapped whole. A write batch is copied
// from the ring into the windows it falls in (mapped on demand, the least recently used one
// unmapped when the bound is reached); durability is msync(MS_SYNC) of a file's dirty window,
// or fdatasync when its unsynced pages are not all in one live window. No JavaScript here.
//
// Bound: at most kMaxWindows windows of at most kWindowBytes each are mapped per context
// (one context per shard), so a shard never maps more than kMaxWindows * kWindowBytes
// (16 MiB), whatever the size of the log. Reads copy from a live window when the range lies
// in one, else pread: page-cache coherence makes both see the same bytes.
//
// SIGBUS invariant: nothing is ever stored through a mapping into a byte the file system has
// not allocated, and nothing is read or written past the file's end. A window is mapped only
// after fallocate of exactly its range succeeded (which also extends a shorter file), and
// refused (EOPNOTSUPP) where fallocate is unsupported rather than map a sparse range, whose
// first write fault on a full disk would kill the process with SIGBUS instead of returning
// ENOSPC. When fallocate of a window fails for lack of space (ENOSPC, EDQUOT), the window
// is retried over only the pages the write needs (already allocated space needs no new
// blocks); if that fails too the write fails with that errno, as a failed write would on the
// fd path.
#ifndef WALRUS_MAPPED_FILES_H_
#define WALRUS_MAPPED_FILES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "sysio.h"
#include "write_batch.h"

namespace walrus {

class MappedFiles {
 public:
  static constexpr uint64_t kWindowBytes = 2ULL << 20;
  static constexpr size_t kMaxWindows = 8;

  MappedFiles() = default;
  ~MappedFiles() { UnmapAll(); }
  MappedFiles(const MappedFiles&) = delete;
  MappedFiles& operator=(const MappedFiles&) = delete;

  // Registers fd as a file of `length` bytes that writes may target; maps nothing yet.
  // `unsynced`: the file has pages written before (through another descriptor) and not yet
  // synced, so its next sync must be an fdatasync. EINVAL when fd is already registered.
  bool Map(int fd, uint64_t length, bool unsynced, IoFailure* failure);
  // Unmaps fd's windows and forgets it; 0, -EBADF when fd is not registered, or munmap's
  // -errno. Pages written through its windows stay dirty in the page cache: whoever syncs the
  // file later (through any descriptor) makes them durable.
  int Unmap(int fd);
  // Unmaps everything; errors are ignored (only used on teardown, when nobody is left to
  // tell and the mappings' data was made durable or is allowed to be lost).
  void UnmapAll();
  // Copies up to `length` bytes from `position` of fd into `out` (from a live window, else
  // pread), never past the registered length; returns the bytes copied (fewer at the end of
  // the file), or -errno (-EBADF when fd is not registered).
  int64_t Read(int fd, uint8_t* out, size_t length, uint64_t position) const;
  // Why `batch` cannot run (a piece or sync fd that is not registered, or a piece outside its
  // file's length), or an empty string. Run must only be given batches that pass this check.
  std::string Check(const WriteBatch& batch) const;
  // Copies every piece into its windows, then makes each sync fd durable (msync of its one
  // dirty window, else fdatasync). Returns true, or false with *failure set. In the test
  // build every msync, fdatasync and mmap passes through the running batch's fault plan.
  bool Run(const WriteBatch& batch, IoFailure* failure);
  size_t count() const { return files_.size(); }
  // Bytes mapped now (the sum of the live windows' lengths).
  uint64_t mapped_bytes() const;

 private:
  struct File {
    uint64_t length;   // writes must lie inside [0, length)
    bool other_dirty;  // unsynced pages outside the live windows (an unmapped window, or
                       // writes made before this registration): the next sync is fdatasync
  };
  struct Window {
    int fd;
    uint64_t lo;  // file offset of base (page aligned)
    uint64_t len;
    uint8_t* base;
    uint64_t dirty_lo;  // range written since the last sync; empty when dirty_lo >= dirty_hi
    uint64_t dirty_hi;
    uint64_t used;  // LRU clock
  };
  // The window holding `pos` of fd (mapped if need be, `want` bytes from pos wanted), or null
  // with *failure set.
  Window* WindowFor(int fd, uint64_t pos, uint64_t want, IoFailure* failure);
  // Unmaps windows_[i] (a dirty one leaves its file other_dirty); munmap's result.
  int Drop(size_t i);
  bool SyncFile(int fd, IoFailure* failure);

  std::unordered_map<int, File> files_;
  std::vector<Window> windows_;
  uint64_t clock_ = 0;
};

}  // namespace walrus

#endif  // WALRUS_MAPPED_FILES_H_
