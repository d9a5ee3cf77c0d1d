// The system calls behind every write, sync and io_uring operation, funnelled through one
// place, where the fault-injection seam for tests (FaultPlan) sits beside them. Each
// returns the kernel's convention: a non-negative result, or -errno. None retries.
#ifndef WALRUS_SYSIO_H_
#define WALRUS_SYSIO_H_

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

struct io_uring_params;

namespace walrus {

ssize_t sys_pwritev(int fd, const struct iovec* iov, int count, uint64_t position);
ssize_t sys_pread(int fd, void* buffer, size_t length, uint64_t position);
// fdatasync/fsync: in the power-loss simulation's negative control (tests only) they return
// success without reaching the kernel.
int sys_fdatasync(int fd);
int sys_fsync(int fd);
// The file-system calls of fileops.cc; none retries EINTR (their callers do).
int sys_open(const char* path, int flags, mode_t mode);
int sys_unlink(const char* path);
int sys_rename(const char* from, const char* to);
int sys_ftruncate(int fd, uint64_t length);
int sys_fallocate(int fd, uint64_t offset, uint64_t length);
int sys_uring_setup(unsigned entries, struct io_uring_params* params);
int sys_uring_enter(int ring_fd, unsigned to_submit, unsigned min_complete, unsigned flags);
int sys_uring_register(int ring_fd, unsigned opcode, void* arg, unsigned count);
// The mmap backend's calls: a shared read-write mapping of [offset, offset + length) of fd
// (offset page aligned; *out set on success), its removal, msync(MS_SYNC) of a range and the
// file's size (fallocate is above).
int sys_mmap_shared(int fd, uint64_t offset, size_t length, void** out);
int sys_munmap(void* address, size_t length);
int sys_msync(void* address, size_t length);
int64_t sys_fstat_size(int fd);

// Fault injection, for tests only: a plan owned by one IoContext makes the `nth` (1-based)
// write, fdatasync (or msync, its mmap-backend equivalent, or the fdatasync a mapped context
// does for a file whose dirty pages are not all in one window) or mmap performed through it fail. A write is one pwritev call or one io_uring
// WRITEV completion; an fdatasync is one call or one FSYNC completion. With `short_write`, the
// nth write writes (or, for io_uring, reports) only half of its bytes and the next pwritev
// (the attempt to complete it) fails. Inactive plans (nth == 0, the default) change nothing.
//
// The file operations of fileops.cc (open, pwritev, fdatasync, fsync, fallocate, ftruncate,
// rename, unlink, pread) have one plan per thread (per addon instance) of the other kinds:
// the nth call of that kind fails with `err` before reaching the kernel (FaultCall).
struct FaultPlan {
  enum class Kind {
    kWrite,
    kSync,
    kMap,
    kOpen,
    kFileWrite,
    kFileDataSync,
    kFileSync,
    kFallocate,
    kFtruncate,
    kRename,
    kUnlink,
    kRead,
  };
  Kind kind = Kind::kWrite;
  uint64_t nth = 0;              // 0: no plan
  int err = 0;                   // positive errno
  bool short_write = false;
  uint64_t seen = 0;             // operations of `kind` counted since the plan was set
  bool fail_next_write = false;  // armed by a short write
};

// Sets (nth > 0) or clears (nth == 0) the plan and resets its counters.
void SetFault(FaultPlan* plan, FaultPlan::Kind kind, uint64_t nth, int err, bool short_write);
// sys_pwritev / sys_fdatasync through `plan` (may be null).
ssize_t FaultPwritev(FaultPlan* plan, int fd, const struct iovec* iov, int count,
                     uint64_t position);
int FaultFdatasync(FaultPlan* plan, int fd);
// sys_msync (counted as a kSync operation) / sys_mmap_shared (kMap) through `plan`.
int FaultMsync(FaultPlan* plan, void* address, size_t length);
int FaultMmap(FaultPlan* plan, int fd, uint64_t offset, size_t length, void** out);
// An io_uring completion seen through `plan` (may be null): rewrites *res as the injected
// error, or, for a short write of a `bytes`-byte request, as half of it.
void FaultCompletion(FaultPlan* plan, bool is_write, uint64_t bytes, int32_t* res);
// Counts one call of `kind` through `plan` (may be null): -err when it is the planned one (the
// caller then skips the system call), else 0.
int FaultCall(FaultPlan* plan, FaultPlan::Kind kind);

// Writes every byte of iov[0, count) at `position`: retries EINTR, continues after short
// writes and passes at most IOV_MAX iovecs per call. Advances the iovecs it was given (they
// describe what is left when it fails). Returns 0 or -errno; *written counts bytes written.
// Each pwritev goes through `plan` when one is given.
int WriteAll(int fd, struct iovec* iov, size_t count, uint64_t position, uint64_t* written,
             FaultPlan* plan = nullptr);

// Reads until `length` bytes are read or end of file; retries EINTR. Returns bytes read or
// -errno.
int64_t ReadAll(int fd, uint8_t* buffer, size_t length, uint64_t position);

// Drops the first `skip` bytes of iov[0, count) by advancing entries; returns the index of
// the first iovec with bytes left (== count when none are left).
size_t SkipBytes(struct iovec* iov, size_t count, uint64_t skip);

// fdatasync / fsync retried on EINTR. Return 0 or -errno. DataSync's calls go through `plan`
// when one is given.
int DataSync(int fd, FaultPlan* plan = nullptr);
int FullSync(int fd);

}  // namespace walrus

#endif  // WALRUS_SYSIO_H_
