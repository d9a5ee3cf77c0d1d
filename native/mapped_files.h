// The mmap backend's files: segment files mapped MAP_SHARED, read-write, each mapping
// covering exactly [0, length) of its file. A write batch is copied from the ring into the
// mappings; durability is msync(MS_SYNC) of each file's dirty range. No JavaScript here.
//
// SIGBUS invariant: nothing is ever stored through a mapping into a byte the file system has
// not allocated, and nothing is read or written past the file's end. Map() first fallocates
// [0, length) (which also extends a shorter file), and refuses (EOPNOTSUPP) where fallocate
// is unsupported rather than map a sparse file, whose first write fault on a full disk would
// kill the process with SIGBUS instead of returning ENOSPC. When fallocate fails for lack of
// space (ENOSPC, EDQUOT: a file whose creation was cut short by a full disk, found again by
// recovery), the file is mapped only up to its current size, for reads (a read fault in a
// hole maps a zero page and allocates nothing), and every write to it fails with that errno
// as a failed write would on the fd path.
#ifndef WALRUS_MAPPED_FILES_H_
#define WALRUS_MAPPED_FILES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "sysio.h"
#include "write_batch.h"

namespace walrus {

class MappedFiles {
 public:
  MappedFiles() = default;
  ~MappedFiles() { UnmapAll(); }
  MappedFiles(const MappedFiles&) = delete;
  MappedFiles& operator=(const MappedFiles&) = delete;

  // Allocates and maps [0, length) of fd (see the invariant above for a full disk). Returns
  // true, or false with *failure set (nothing mapped). The mmap call passes through `plan`.
  bool Map(int fd, uint64_t length, IoFailure* failure, FaultPlan* plan);
  // Removes fd's mapping; 0, -EBADF when fd is not mapped, or munmap's -errno.
  int Unmap(int fd);
  // Unmaps everything; errors are ignored (only used on teardown, when nobody is left to
  // tell and the mappings' data was made durable or is allowed to be lost).
  void UnmapAll();
  // Copies up to `length` bytes from `position` of fd's mapping into `out`; returns the
  // bytes copied (fewer at the end of the mapping), or -EBADF when fd is not mapped.
  int64_t Read(int fd, uint8_t* out, size_t length, uint64_t position) const;
  // Why `batch` cannot run (a piece or sync fd that is not mapped, or a piece outside its
  // mapping), or an empty string. Run must only be given batches that pass this check.
  std::string Check(const WriteBatch& batch) const;
  // Copies every piece into its mapping, then msyncs the dirty range of each sync fd. Returns
  // true, or false with *failure set. Every msync passes through `plan` (tests only).
  bool Run(const WriteBatch& batch, IoFailure* failure, FaultPlan* plan);
  size_t count() const { return maps_.size(); }

 private:
  struct Mapping {
    uint8_t* base;     // null when nothing is mapped (an empty file that could not grow)
    uint64_t length;   // the length asked for: writes must lie inside it
    uint64_t mapped;   // bytes mapped: `length`, or the file's size when it could not grow
    int write_err;     // 0, or the errno every write to this file fails with
    // Byte range written since the last successful msync; empty when lo >= hi.
    uint64_t dirty_lo;
    uint64_t dirty_hi;
  };
  std::unordered_map<int, Mapping> maps_;
};

}  // namespace walrus

#endif  // WALRUS_MAPPED_FILES_H_
