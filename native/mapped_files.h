// The mmap backend's files: segment files mapped MAP_SHARED, read-write, each mapping
// covering exactly [0, length) of its file. A write batch is copied from the ring into the
// mappings; durability is msync(MS_SYNC) of each file's dirty range. No JavaScript here.
//
// SIGBUS invariant: a mapping never covers a byte the file system has not allocated. Map()
// first fallocates [0, length) (which also extends a shorter file), and refuses (EOPNOTSUPP)
// where fallocate is unsupported rather than map a sparse file, whose first write fault on a
// full disk would kill the process with SIGBUS instead of returning ENOSPC.
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

  // Allocates and maps [0, length) of fd. Returns true, or false with *failure set (nothing
  // mapped). The mmap call passes through `plan` (tests only).
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
    uint8_t* base;
    uint64_t length;
    // Byte range written since the last successful msync; empty when lo >= hi.
    uint64_t dirty_lo;
    uint64_t dirty_hi;
  };
  std::unordered_map<int, Mapping> maps_;
};

}  // namespace walrus

#endif  // WALRUS_MAPPED_FILES_H_
