// The system calls behind every write, sync and io_uring operation, funnelled through one
// place, where the test build's seams (seams.h: the power-loss journal, faults) hook in.
// Each returns the kernel's convention: a non-negative result, or -errno. None retries.
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
// fdatasync/fsync: in the power-loss simulation's negative control (test build only) they
// return success without reaching the kernel.
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

// Writes every byte of iov[0, count) at `position`: retries EINTR, continues after short
// writes and passes at most IOV_MAX iovecs per call. Advances the iovecs it was given (they
// describe what is left when it fails). Returns 0 or -errno; *written counts bytes written.
// In the test build each pwritev of a running write batch goes through its context's fault
// plan (seam::InterceptWrite).
int WriteAll(int fd, struct iovec* iov, size_t count, uint64_t position, uint64_t* written);

// Reads until `length` bytes are read or end of file; retries EINTR. Returns bytes read or
// -errno.
int64_t ReadAll(int fd, uint8_t* buffer, size_t length, uint64_t position);

// Drops the first `skip` bytes of iov[0, count) by advancing entries; returns the index of
// the first iovec with bytes left (== count when none are left).
size_t SkipBytes(struct iovec* iov, size_t count, uint64_t skip);

// fdatasync / fsync retried on EINTR. Return 0 or -errno. In the test build DataSync's calls
// in a running write batch go through its context's fault plan (seam::BatchFault).
int DataSync(int fd);
int FullSync(int fd);

}  // namespace walrus

#endif  // WALRUS_SYSIO_H_
