#include "mapped_files.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace walrus {
namespace {

uint64_t PageSize() {
  const long size = ::sysconf(_SC_PAGESIZE);
  return size > 0 ? static_cast<uint64_t>(size) : 4096;
}

}  // namespace

bool MappedFiles::Map(int fd, uint64_t length, IoFailure* failure, FaultPlan* plan) {
  if (length == 0 || maps_.count(fd) != 0) {
    *failure = IoFailure{EINVAL, "mmap"};
    return false;
  }
  // Reserve every block the mapping covers before it exists (see the SIGBUS invariant).
  int rc;
  do rc = sys_fallocate(fd, 0, length); while (rc == -EINTR);
  const bool no_space = rc == -ENOSPC || rc == -EDQUOT;
  if (rc < 0 && !no_space) {
    *failure = IoFailure{-rc, "fallocate"};
    return false;
  }
  const int64_t size = sys_fstat_size(fd);
  if (size < 0) {
    *failure = IoFailure{static_cast<int>(-size), "fstat"};
    return false;
  }
  // After a successful fallocate the file is at least `length` long (fallocate never
  // shrinks); a shorter one would be a broken file system.
  if (!no_space && static_cast<uint64_t>(size) < length) {
    *failure = IoFailure{EIO, "fstat"};
    return false;
  }
  const uint64_t mapped = no_space && static_cast<uint64_t>(size) < length ? size : length;
  void* base = nullptr;
  if (mapped > 0) {
    rc = FaultMmap(plan, fd, static_cast<size_t>(mapped), &base);
    if (rc < 0) {
      *failure = IoFailure{-rc, "mmap"};
      return false;
    }
  }
  maps_.emplace(fd, Mapping{static_cast<uint8_t*>(base), length, mapped, no_space ? -rc : 0, 0, 0});
  return true;
}

int MappedFiles::Unmap(int fd) {
  const auto it = maps_.find(fd);
  if (it == maps_.end()) return -EBADF;
  const Mapping m = it->second;
  maps_.erase(it);
  return m.mapped > 0 ? sys_munmap(m.base, static_cast<size_t>(m.mapped)) : 0;
}

void MappedFiles::UnmapAll() {
  for (const auto& entry : maps_) {
    if (entry.second.mapped > 0) sys_munmap(entry.second.base, entry.second.mapped);
  }
  maps_.clear();
}

int64_t MappedFiles::Read(int fd, uint8_t* out, size_t length, uint64_t position) const {
  const auto it = maps_.find(fd);
  if (it == maps_.end()) return -EBADF;
  const Mapping& m = it->second;
  if (position >= m.mapped) return 0;
  const uint64_t n = length < m.mapped - position ? length : m.mapped - position;
  std::memcpy(out, m.base + position, static_cast<size_t>(n));
  return static_cast<int64_t>(n);
}

std::string MappedFiles::Check(const WriteBatch& batch) const {
  for (size_t i = 0; i < batch.pieces.size(); i++) {
    const WritePiece& p = batch.pieces[i];
    const auto it = maps_.find(p.fd);
    if (it == maps_.end()) return "a write to fd " + std::to_string(p.fd) + ", which is not mapped";
    if (p.position > it->second.length || p.bytes > it->second.length - p.position) {
      return "a write of " + std::to_string(p.bytes) + " bytes at " + std::to_string(p.position) +
             " past the end of the " + std::to_string(it->second.length) + "-byte mapping of fd " +
             std::to_string(p.fd);
    }
  }
  for (int fd : batch.sync_fds) {
    if (maps_.count(fd) == 0) return "a sync of fd " + std::to_string(fd) + ", which is not mapped";
  }
  return std::string();
}

bool MappedFiles::Run(const WriteBatch& batch, IoFailure* failure, FaultPlan* plan) {
  for (const WritePiece& p : batch.pieces) {
    Mapping& m = maps_.find(p.fd)->second;
    if (m.write_err != 0) {
      *failure = IoFailure{m.write_err, "fallocate"};
      return false;
    }
    uint8_t* to = m.base + p.position;
    for (size_t k = 0; k < p.iov_count; k++) {
      const struct iovec& v = batch.iov[p.first_iov + k];
      std::memcpy(to, v.iov_base, v.iov_len);
      to += v.iov_len;
    }
    const uint64_t end = p.position + p.bytes;
    if (m.dirty_lo >= m.dirty_hi) {
      m.dirty_lo = p.position;
      m.dirty_hi = end;
    } else {
      if (p.position < m.dirty_lo) m.dirty_lo = p.position;
      if (end > m.dirty_hi) m.dirty_hi = end;
    }
  }
  // One msync per file over the span of everything written to it since its last msync: the
  // clean pages inside the span cost a page-cache lookup, not I/O, and one call means one
  // journal commit and one device flush per file, as one fdatasync on the fd path.
  const uint64_t page = PageSize();
  for (int fd : batch.sync_fds) {
    Mapping& m = maps_.find(fd)->second;
    if (m.dirty_lo >= m.dirty_hi) continue;
    const uint64_t from = m.dirty_lo / page * page;
    int rc;
    do rc = FaultMsync(plan, m.base + from, static_cast<size_t>(m.dirty_hi - from));
    while (rc == -EINTR);
    if (rc < 0) {
      // Fail-stop: the range stays dirty, but the shard never syncs again after a failure.
      *failure = IoFailure{-rc, "msync"};
      return false;
    }
    m.dirty_lo = m.dirty_hi = 0;
  }
  return true;
}

}  // namespace walrus
