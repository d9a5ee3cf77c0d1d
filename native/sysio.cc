#include "sysio.h"

#include <fcntl.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>

#include "seams.h"

namespace walrus {
namespace {

inline ssize_t Result(ssize_t rc) { return rc < 0 ? -errno : rc; }

}  // namespace

// Every call that changes a file or a directory tells the power-loss journal (test build
// only; seams.h) before it happens, and every sync after it succeeded.

ssize_t sys_pwritev(int fd, const struct iovec* iov, int count, uint64_t position) {
  seam::BeforeWritev(fd, iov, count, position);
  return Result(::pwritev(fd, iov, count, static_cast<off_t>(position)));
}

ssize_t sys_pread(int fd, void* buffer, size_t length, uint64_t position) {
  return Result(::pread(fd, buffer, length, static_cast<off_t>(position)));
}

int sys_fdatasync(int fd) {
  if (seam::SkipSync()) return 0;
  const int rc = static_cast<int>(Result(::fdatasync(fd)));
  if (rc == 0) seam::Synced(fd);
  return rc;
}

int sys_fsync(int fd) {
  if (seam::SkipSync()) return 0;
  const int rc = static_cast<int>(Result(::fsync(fd)));
  if (rc == 0) seam::Synced(fd);
  return rc;
}

int sys_open(const char* path, int flags, mode_t mode) {
  const bool creates = seam::WillCreate(path, flags);
  const int fd = static_cast<int>(Result(::open(path, flags, mode)));
  if (fd >= 0 && creates) seam::Created(fd);
  return fd;
}

int sys_unlink(const char* path) {
  int rc;
  if (seam::Unlink(path, &rc)) return rc;
  return static_cast<int>(Result(::unlink(path)));
}

int sys_rename(const char* from, const char* to) {
  int rc;
  if (seam::Rename(from, to, &rc)) return rc;
  return static_cast<int>(Result(::rename(from, to)));
}

int sys_ftruncate(int fd, uint64_t length) {
  seam::BeforeResize(fd, length);
  return static_cast<int>(Result(::ftruncate(fd, static_cast<off_t>(length))));
}

int sys_fallocate(int fd, uint64_t offset, uint64_t length) {
  seam::BeforeResize(fd, offset + length);
  return static_cast<int>(
      Result(::fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(length))));
}

int sys_uring_setup(unsigned entries, struct io_uring_params* params) {
  return static_cast<int>(Result(::syscall(__NR_io_uring_setup, entries, params)));
}

int sys_uring_enter(int ring_fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
  return static_cast<int>(Result(
      ::syscall(__NR_io_uring_enter, ring_fd, to_submit, min_complete, flags, nullptr, 0)));
}

int sys_uring_register(int ring_fd, unsigned opcode, void* arg, unsigned count) {
  return static_cast<int>(Result(::syscall(__NR_io_uring_register, ring_fd, opcode, arg, count)));
}

int sys_mmap_shared(int fd, uint64_t offset, size_t length, void** out) {
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                   static_cast<off_t>(offset));
  if (p == MAP_FAILED) return -errno;
  *out = p;
  return 0;
}

int sys_munmap(void* address, size_t length) {
  return static_cast<int>(Result(::munmap(address, length)));
}

int sys_msync(void* address, size_t length) {
  return static_cast<int>(Result(::msync(address, length, MS_SYNC)));
}

int64_t sys_fstat_size(int fd) {
  struct stat st;
  if (::fstat(fd, &st) < 0) return -errno;
  return static_cast<int64_t>(st.st_size);
}

size_t SkipBytes(struct iovec* iov, size_t count, uint64_t skip) {
  size_t i = 0;
  while (i < count && skip >= iov[i].iov_len) {
    skip -= iov[i].iov_len;
    iov[i].iov_len = 0;
    i++;
  }
  if (i < count && skip > 0) {
    iov[i].iov_base = static_cast<uint8_t*>(iov[i].iov_base) + skip;
    iov[i].iov_len -= skip;
  }
  // Zero-length entries carry nothing; leave them out of the next call.
  while (i < count && iov[i].iov_len == 0) i++;
  return i;
}

int WriteAll(int fd, struct iovec* iov, size_t count, uint64_t position, uint64_t* written) {
  *written = 0;
  size_t first = SkipBytes(iov, count, 0);
  while (first < count) {
    const size_t batch = count - first < IOV_MAX ? count - first : IOV_MAX;
    ssize_t rc;
    if (!seam::InterceptWrite(fd, iov + first, static_cast<int>(batch), position, &rc)) {
      rc = sys_pwritev(fd, iov + first, static_cast<int>(batch), position);
    }
    if (rc == -EINTR) continue;
    if (rc < 0) return static_cast<int>(rc);
    // A regular file never accepts zero bytes of a non-empty request without an error;
    // reporting EIO beats spinning forever.
    if (rc == 0) return -EIO;
    position += static_cast<uint64_t>(rc);
    *written += static_cast<uint64_t>(rc);
    first += SkipBytes(iov + first, count - first, static_cast<uint64_t>(rc));
  }
  return 0;
}

int64_t ReadAll(int fd, uint8_t* buffer, size_t length, uint64_t position) {
  size_t done = 0;
  while (done < length) {
    const ssize_t rc = sys_pread(fd, buffer + done, length - done, position + done);
    if (rc == -EINTR) continue;
    if (rc < 0) return rc;
    if (rc == 0) break;
    done += static_cast<size_t>(rc);
  }
  return static_cast<int64_t>(done);
}

int DataSync(int fd) {
  int rc;
  do {
    rc = seam::BatchFault(seam::BatchOp::kSync);
    if (rc == 0) rc = sys_fdatasync(fd);
  } while (rc == -EINTR);
  return rc;
}

int FullSync(int fd) {
  int rc;
  do rc = sys_fsync(fd); while (rc == -EINTR);
  return rc;
}

}  // namespace walrus
