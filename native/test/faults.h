// Fault injection, test build only (the hooks are declared in ../seams.h).
//
// A plan owned by one IoContext (ContextFaults, set by IoContext.injectFault) makes the `nth`
// (1-based) write, fdatasync (or msync, its mmap-backend equivalent, or the fdatasync a
// mapped context does for a file whose dirty pages are not all in one window) or mmap
// performed by that context's writeBatch fail with `err`. A write is one pwritev call or one
// io_uring WRITEV completion; an fdatasync is one call or one FSYNC completion. With
// `short_write`, the nth write writes (or, for io_uring, reports) only half of its bytes and
// the next pwritev (the attempt to complete it) fails. Inactive plans (nth == 0, the
// default) change nothing. While writeBatch runs, its context's plan is the thread's running
// batch plan (seam::BatchScope).
//
// The file operations of fileops.cc (open, pwritev, fdatasync, fsync, fallocate, ftruncate,
// rename, unlink, pread) have one plan per thread (testSeams.fileFault): the nth call of
// that kind fails with `err` before reaching the kernel (seam::FileFault).
#ifndef WALRUS_TEST_FAULTS_H_
#define WALRUS_TEST_FAULTS_H_

#include <cstdint>

#include "../seams.h"

namespace walrus {
namespace seam {

struct ContextFaults {
  enum class Kind { kWrite, kSync, kMap };
  Kind kind = Kind::kWrite;
  uint64_t nth = 0;              // 0: no plan
  int err = 0;                   // positive errno
  bool short_write = false;
  uint64_t seen = 0;             // operations of `kind` counted since the plan was set
  bool fail_next_write = false;  // armed by a short write
};

// Sets (nth > 0) or clears (nth == 0) a context's plan and resets its counters.
void SetContextFault(ContextFaults* faults, ContextFaults::Kind kind, uint64_t nth, int err,
                     bool short_write);
// Sets (nth > 0) or clears (nth == 0) the calling thread's file plan.
void SetFileFault(FileOp op, uint64_t nth, int err);

}  // namespace seam
}  // namespace walrus

#endif  // WALRUS_TEST_FAULTS_H_
