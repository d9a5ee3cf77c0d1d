// The system calls behind every write, sync and io_uring operation, funnelled through one
// place so that a fault-injection seam can be added here without touching callers. Each
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
int sys_fdatasync(int fd);
int sys_fsync(int fd);
int sys_uring_setup(unsigned entries, struct io_uring_params* params);
int sys_uring_enter(int ring_fd, unsigned to_submit, unsigned min_complete, unsigned flags);
int sys_uring_register(int ring_fd, unsigned opcode, void* arg, unsigned count);

// Writes every byte of iov[0, count) at `position`: retries EINTR, continues after short
// writes and passes at most IOV_MAX iovecs per call. Advances the iovecs it was given (they
// describe what is left when it fails). Returns 0 or -errno; *written counts bytes written.
int WriteAll(int fd, struct iovec* iov, size_t count, uint64_t position, uint64_t* written);

// Reads until `length` bytes are read or end of file; retries EINTR. Returns bytes read or
// -errno.
int64_t ReadAll(int fd, uint8_t* buffer, size_t length, uint64_t position);

// Drops the first `skip` bytes of iov[0, count) by advancing entries; returns the index of
// the first iovec with bytes left (== count when none are left).
size_t SkipBytes(struct iovec* iov, size_t count, uint64_t skip);

// fdatasync / fsync retried on EINTR. Return 0 or -errno.
int DataSync(int fd);
int FullSync(int fd);

}  // namespace walrus

#endif  // WALRUS_SYSIO_H_
