// Executing a validated write batch: every piece written in full, then every sync fd
// fdatasync'd, either through io_uring or with pwritev. No JavaScript here.
#ifndef WALRUS_WRITE_BATCH_H_
#define WALRUS_WRITE_BATCH_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "sysio.h"
#include "uring.h"

namespace walrus {

// A contiguous write of iov[first_iov, first_iov + iov_count) at `position`; at most IOV_MAX
// iovecs and never empty.
struct WritePiece {
  int fd;
  uint64_t position;
  size_t first_iov;
  size_t iov_count;
  uint64_t bytes;
};

struct WriteBatch {
  std::vector<struct iovec> iov;
  std::vector<WritePiece> pieces;  // in the caller's order
  std::vector<int> sync_fds;       // sorted, distinct

  void Clear() {
    iov.clear();
    pieces.clear();
    sync_fds.clear();
  }
};

// The first failure: a positive errno and the system call (or io_uring operation) it came from.
struct IoFailure {
  int err = 0;
  const char* syscall = nullptr;
};

// Reused between batches so that a steady stream of batches does not allocate.
struct UringScratch {
  struct Chain {
    int fd;
    size_t begin;  // range of `order`
    size_t end;
    bool sync;
  };
  struct Slot {
    bool is_write;
    uint32_t piece;  // for writes
    int fd;
  };
  std::vector<uint32_t> order;  // piece indexes grouped by fd, each fd's in caller order
  std::vector<Chain> chains;
  std::vector<Slot> slots;      // this round's submissions; user_data is the index
  std::vector<int32_t> results;
  std::vector<uint64_t> redo;   // per slot: bytes already written when a write needs finishing
  std::vector<int> resync;
};

// Both return true on success, or false with *failure set. The batch's iovecs may be modified.
// In the test build every write and fdatasync passes through the fault plan of the running
// batch (seams.h).
bool RunPwritev(WriteBatch& batch, IoFailure* failure);
bool RunUring(Ring& ring, WriteBatch& batch, UringScratch& scratch, IoFailure* failure);

}  // namespace walrus

#endif  // WALRUS_WRITE_BATCH_H_
