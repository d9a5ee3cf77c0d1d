#include "mapped_files.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "seams.h"

namespace walrus {
namespace {

uint64_t PageSize() {
  const long size = ::sysconf(_SC_PAGESIZE);
  return size > 0 ? static_cast<uint64_t>(size) : 4096;
}

int Fallocate(int fd, uint64_t offset, uint64_t length) {
  int rc;
  do rc = sys_fallocate(fd, offset, length); while (rc == -EINTR);
  return rc;
}

}  // namespace

bool MappedFiles::Map(int fd, uint64_t length, bool unsynced, IoFailure* failure) {
  if (length == 0 || files_.count(fd) != 0) {
    *failure = IoFailure{EINVAL, "mmap"};
    return false;
  }
  files_.emplace(fd, File{length, unsynced});
  return true;
}

int MappedFiles::Drop(size_t i) {
  const Window w = windows_[i];
  windows_.erase(windows_.begin() + static_cast<std::ptrdiff_t>(i));
  if (w.dirty_lo < w.dirty_hi) {
    const auto it = files_.find(w.fd);
    if (it != files_.end()) it->second.other_dirty = true;
  }
  return sys_munmap(w.base, static_cast<size_t>(w.len));
}

int MappedFiles::Unmap(int fd) {
  const auto it = files_.find(fd);
  if (it == files_.end()) return -EBADF;
  int rc = 0;
  for (size_t i = windows_.size(); i-- > 0;) {
    if (windows_[i].fd != fd) continue;
    const int r = Drop(i);
    if (rc == 0) rc = r;
  }
  files_.erase(fd);
  return rc;
}

void MappedFiles::UnmapAll() {
  for (const Window& w : windows_) sys_munmap(w.base, static_cast<size_t>(w.len));
  windows_.clear();
  files_.clear();
}

uint64_t MappedFiles::mapped_bytes() const {
  uint64_t total = 0;
  for (const Window& w : windows_) total += w.len;
  return total;
}

int64_t MappedFiles::Read(int fd, uint8_t* out, size_t length, uint64_t position) const {
  const auto it = files_.find(fd);
  if (it == files_.end()) return -EBADF;
  if (position >= it->second.length) return 0;
  const uint64_t n = length < it->second.length - position ? length : it->second.length - position;
  for (const Window& w : windows_) {
    if (w.fd == fd && position >= w.lo && position + n <= w.lo + w.len) {
      std::memcpy(out, w.base + (position - w.lo), static_cast<size_t>(n));
      return static_cast<int64_t>(n);
    }
  }
  return ReadAll(fd, out, static_cast<size_t>(n), position);
}

std::string MappedFiles::Check(const WriteBatch& batch) const {
  for (size_t i = 0; i < batch.pieces.size(); i++) {
    const WritePiece& p = batch.pieces[i];
    const auto it = files_.find(p.fd);
    if (it == files_.end()) return "a write to fd " + std::to_string(p.fd) + ", which is not mapped";
    if (p.position > it->second.length || p.bytes > it->second.length - p.position) {
      return "a write of " + std::to_string(p.bytes) + " bytes at " + std::to_string(p.position) +
             " past the end of the " + std::to_string(it->second.length) + "-byte mapping of fd " +
             std::to_string(p.fd);
    }
  }
  for (int fd : batch.sync_fds) {
    if (files_.count(fd) == 0) return "a sync of fd " + std::to_string(fd) + ", which is not mapped";
  }
  return std::string();
}

MappedFiles::Window* MappedFiles::WindowFor(int fd, uint64_t pos, uint64_t want,
                                            IoFailure* failure) {
  for (Window& w : windows_) {
    if (w.fd == fd && pos >= w.lo && pos < w.lo + w.len) {
      w.used = ++clock_;
      return &w;
    }
  }
  const uint64_t length = files_.find(fd)->second.length;
  const uint64_t page = PageSize();
  uint64_t lo = pos / kWindowBytes * kWindowBytes;
  uint64_t hi = lo + kWindowBytes < length ? lo + kWindowBytes : length;
  // Reserve every block the window covers before it exists (see the SIGBUS invariant).
  int rc = Fallocate(fd, lo, hi - lo);
  if (rc == -ENOSPC || rc == -EDQUOT) {
    // Only the pages this write needs: space already allocated needs no new blocks.
    lo = pos / page * page;
    const uint64_t end = (pos + want + page - 1) / page * page;
    if (end < hi) hi = end;
    rc = Fallocate(fd, lo, hi - lo);
  }
  if (rc < 0) {
    *failure = IoFailure{-rc, "fallocate"};
    return nullptr;
  }
  // After a successful fallocate the file is at least `hi` long (fallocate never shrinks);
  // a shorter one would be a broken file system.
  const int64_t size = sys_fstat_size(fd);
  if (size < 0 || static_cast<uint64_t>(size) < hi) {
    *failure = IoFailure{size < 0 ? static_cast<int>(-size) : EIO, "fstat"};
    return nullptr;
  }
  if (windows_.size() >= kMaxWindows) {
    size_t oldest = 0;
    for (size_t i = 1; i < windows_.size(); i++) {
      if (windows_[i].used < windows_[oldest].used) oldest = i;
    }
    rc = Drop(oldest);
    if (rc < 0) {
      *failure = IoFailure{-rc, "munmap"};
      return nullptr;
    }
  }
  void* base = nullptr;
  rc = seam::BatchFault(seam::BatchOp::kMap);
  if (rc == 0) rc = sys_mmap_shared(fd, lo, static_cast<size_t>(hi - lo), &base);
  if (rc < 0) {
    *failure = IoFailure{-rc, "mmap"};
    return nullptr;
  }
  windows_.push_back(Window{fd, lo, hi - lo, static_cast<uint8_t*>(base), 0, 0, ++clock_});
  return &windows_.back();
}

bool MappedFiles::SyncFile(int fd, IoFailure* failure) {
  File& f = files_.find(fd)->second;
  Window* only = nullptr;
  size_t dirty = 0;
  for (Window& w : windows_) {
    if (w.fd == fd && w.dirty_lo < w.dirty_hi) {
      only = &w;
      dirty++;
    }
  }
  if (!f.other_dirty && dirty == 0) return true;
  int rc;
  if (!f.other_dirty && dirty == 1) {
    // One msync over the span written since the last sync: the clean pages inside it cost a
    // page-cache lookup, not I/O, and one call means one journal commit and one device flush,
    // as one fdatasync on the fd path.
    const uint64_t page = PageSize();
    const uint64_t from = only->dirty_lo / page * page;
    do {
      rc = seam::BatchFault(seam::BatchOp::kSync);
      if (rc == 0) rc = sys_msync(only->base + from, static_cast<size_t>(only->dirty_hi - from));
    } while (rc == -EINTR);
    if (rc < 0) {
      // Fail-stop: the range stays dirty, but the shard never syncs again after a failure.
      *failure = IoFailure{-rc, "msync"};
      return false;
    }
  } else {
    // Pages written through windows since unmapped (or several windows): fdatasync writes
    // every dirty page of the file, mapped or not, and commits what msync would.
    rc = DataSync(fd);
    if (rc < 0) {
      *failure = IoFailure{-rc, "fdatasync"};
      return false;
    }
  }
  for (Window& w : windows_) {
    if (w.fd == fd) w.dirty_lo = w.dirty_hi = 0;
  }
  f.other_dirty = false;
  return true;
}

bool MappedFiles::Run(const WriteBatch& batch, IoFailure* failure) {
  for (const WritePiece& p : batch.pieces) {
    uint64_t pos = p.position;
    uint64_t left = p.bytes;
    for (size_t k = 0; k < p.iov_count; k++) {
      const struct iovec& v = batch.iov[p.first_iov + k];
      const uint8_t* from = static_cast<const uint8_t*>(v.iov_base);
      uint64_t n = v.iov_len;
      while (n > 0) {
        Window* w = WindowFor(p.fd, pos, left, failure);
        if (w == nullptr) return false;
        const uint64_t room = w->lo + w->len - pos;
        const uint64_t take = n < room ? n : room;
        std::memcpy(w->base + (pos - w->lo), from, static_cast<size_t>(take));
        if (w->dirty_lo >= w->dirty_hi) {
          w->dirty_lo = pos - w->lo;
          w->dirty_hi = pos - w->lo + take;
        } else {
          if (pos - w->lo < w->dirty_lo) w->dirty_lo = pos - w->lo;
          if (pos - w->lo + take > w->dirty_hi) w->dirty_hi = pos - w->lo + take;
        }
        from += take;
        pos += take;
        n -= take;
        left -= take;
      }
    }
  }
  for (int fd : batch.sync_fds) {
    if (!SyncFile(fd, failure)) return false;
  }
  return true;
}

}  // namespace walrus
