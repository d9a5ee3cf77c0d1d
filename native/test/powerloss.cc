// The power-loss journal (see powerloss.h). Test machinery inside the seam: its own calls
// (fstat, pread, write, link, readlink) are plain libc calls, never journaled themselves.
//
// Journal records: one byte of type, a u32 payload length, the payload (integers u64 little
// endian, strings UTF-8 without terminator unless said). A record is written with one
// write(2) before the change it describes; a SIGKILL can cut only the last record, which the
// reader then ignores (the change after it never happened).
//   'F' ino path          the inode's path when the journal first met it
//   'Z' ino size          size before its first change since its last sync
//   'P' ino offset bytes  pre-image of the sector at offset (shorter at end of file)
//   'W' ino offset length a write about to happen
//   'D' ino               fdatasync/fsync succeeded: everything before is durable
//   'Y' path              fsync of a directory succeeded: its entries are durable
//   'C' ino path          entry created
//   'U' ino path\0grave   entry removed; the inode lives on as `grave`
//   'R' ino victim from\0to\0grave   renamed; a replaced target (victim, 0 for none) as grave
//   'X'                   the 'U' or 'R' just before did not happen (its call failed)
//   'S' token ino         a background sync of the inode starts: what is journaled of it
//                         so far is what it covers (later changes are pre-imaged afresh)
//   'Q' token path        the same for the entries of directory `path`
//   'E' token             the background sync of that token succeeded
// Entry records come before their call (a kill in between leaves a record of a change that
// did not happen; undoing it changes nothing), except 'C', which needs the new inode.
#include "powerloss.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace walrus {
namespace powerloss {
namespace {

struct FileState {
  bool dirty = false;  // changed since its last sync ('Z' written)
  std::unordered_set<uint64_t> sectors;  // pre-imaged since its last sync
};

struct Journal {
  std::mutex mu;
  bool active = false;
  bool skip_sync = false;
  uint32_t sector = 0;
  std::string dir;
  int fd = -1;
  uint64_t graves = 0;
  std::unordered_map<uint64_t, FileState> files;
  std::unordered_set<uint64_t> named;
  std::vector<uint8_t> record;
  uint64_t tokens = 0;
};

// Read without the lock on every system call of the seam; set once, under it.
std::atomic<bool> g_active{false};
std::atomic<bool> g_skip_sync{false};

// Process-wide on purpose: every thread's addon instance writes to the same files, and a
// power cut hits them all at once.
Journal& J() {
  static Journal journal;
  return journal;
}

// The journal cannot be allowed to fail quietly: a test would then check against a wrong
// picture of what is durable.
[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "walrus power-loss journal: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

void Put64(std::vector<uint8_t>& r, uint64_t v) {
  for (int i = 0; i < 8; i++) r.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void PutBytes(std::vector<uint8_t>& r, const void* data, size_t length) {
  const auto* p = static_cast<const uint8_t*>(data);
  r.insert(r.end(), p, p + length);
}

void Begin(Journal& j, char type) {
  j.record.clear();
  j.record.push_back(static_cast<uint8_t>(type));
  for (int i = 0; i < 4; i++) j.record.push_back(0);
}

void Emit(Journal& j) {
  const uint32_t length = static_cast<uint32_t>(j.record.size() - 5);
  std::memcpy(j.record.data() + 1, &length, 4);
  size_t done = 0;
  while (done < j.record.size()) {
    const ssize_t rc = ::write(j.fd, j.record.data() + done, j.record.size() - done);
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) Die("write");
    done += static_cast<size_t>(rc);
  }
}

// Withdraws the entry record just written: its system call failed.
void Cancel(Journal& j) {
  Begin(j, 'X');
  Emit(j);
}

std::string FdPath(int fd) {
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char target[PATH_MAX];
  const ssize_t n = ::readlink(link, target, sizeof target - 1);
  if (n < 0) Die("readlink");
  return std::string(target, static_cast<size_t>(n));
}

bool Stat(int fd, struct stat* st) { return ::fstat(fd, st) == 0; }

void Name(Journal& j, uint64_t ino, int fd) {
  if (!j.named.insert(ino).second) return;
  const std::string path = FdPath(fd);
  Begin(j, 'F');
  Put64(j.record, ino);
  PutBytes(j.record, path.data(), path.size());
  Emit(j);
}

void MarkDirty(Journal& j, uint64_t ino, uint64_t size) {
  FileState& f = j.files[ino];
  if (f.dirty) return;
  f.dirty = true;
  Begin(j, 'Z');
  Put64(j.record, ino);
  Put64(j.record, size);
  Emit(j);
}

// Pre-images every sector of [from, to) not yet pre-imaged since the last sync.
void PreImage(Journal& j, int fd, uint64_t ino, uint64_t from, uint64_t to) {
  if (to <= from) return;
  FileState& f = j.files[ino];
  std::vector<uint8_t> buf(j.sector);
  for (uint64_t s = from / j.sector; s <= (to - 1) / j.sector; s++) {
    if (!f.sectors.insert(s).second) continue;
    size_t got = 0;
    while (got < j.sector) {
      const ssize_t rc = ::pread(fd, buf.data() + got, j.sector - got,
                                 static_cast<off_t>(s * j.sector + got));
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0) Die("pread");
      if (rc == 0) break;
      got += static_cast<size_t>(rc);
    }
    Begin(j, 'P');
    Put64(j.record, ino);
    Put64(j.record, s * j.sector);
    PutBytes(j.record, buf.data(), got);
    Emit(j);
  }
}

// The canonical absolute path of an existing entry (its directory resolved, the name kept).
std::string Canonical(const char* path) {
  const std::string p(path);
  const size_t slash = p.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : p.substr(0, slash));
  const std::string base = slash == std::string::npos ? p : p.substr(slash + 1);
  char resolved[PATH_MAX];
  if (::realpath(dir.c_str(), resolved) == nullptr) Die("realpath");
  std::string out(resolved);
  if (out != "/") out += '/';
  return out + base;
}

// Hard-links `path` into the journal directory; returns the grave's path.
std::string Bury(Journal& j, const std::string& path, uint64_t ino) {
  const std::string grave =
      j.dir + "/grave-" + std::to_string(ino) + "-" + std::to_string(++j.graves);
  if (::link(path.c_str(), grave.c_str()) < 0) Die("link (the journal must be on the data's file system)");
  return grave;
}

}  // namespace

int Enable(const std::string& dir, uint32_t sector, bool skip_sync) {
  Journal& j = J();
  std::lock_guard<std::mutex> lock(j.mu);
  if (j.active) return j.dir == dir && j.sector == sector && j.skip_sync == skip_sync ? 0 : -EINVAL;
  if (sector != 512 && sector != 4096) return -EINVAL;
  char resolved[PATH_MAX];
  if (::realpath(dir.c_str(), resolved) == nullptr) return -errno;
  const std::string path = std::string(resolved) + "/journal-" + std::to_string(::getpid()) + ".bin";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  j.fd = fd;
  j.dir = resolved;
  j.sector = sector;
  j.skip_sync = skip_sync;
  j.active = true;
  g_skip_sync.store(skip_sync);
  g_active.store(true);
  return 0;
}

bool Active() { return g_active.load(std::memory_order_acquire); }

bool SkipSync() { return g_active.load(std::memory_order_acquire) && g_skip_sync.load(); }

void BeforeWrite(int fd, uint64_t position, uint64_t length) {
  Journal& j = J();
  std::lock_guard<std::mutex> lock(j.mu);
  struct stat st;
  if (!j.active || length == 0 || !Stat(fd, &st) || !S_ISREG(st.st_mode)) return;
  const uint64_t ino = st.st_ino;
  Name(j, ino, fd);
  MarkDirty(j, ino, static_cast<uint64_t>(st.st_size));
  PreImage(j, fd, ino, position, position + length);
  Begin(j, 'W');
  Put64(j.record, ino);
  Put64(j.record, position);
  Put64(j.record, length);
  Emit(j);
}

void BeforeResize(int fd, uint64_t new_size) {
  Journal& j = J();
  std::lock_guard<std::mutex> lock(j.mu);
  struct stat st;
  if (!j.active || !Stat(fd, &st) || !S_ISREG(st.st_mode)) return;
  const uint64_t ino = st.st_ino;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  Name(j, ino, fd);
  MarkDirty(j, ino, size);
  // Bytes cut away by a shrink come back if the cut does not survive.
  if (new_size < size) PreImage(j, fd, ino, new_size, size);
}

void Synced(int fd) {
  Journal& j = J();
  std::lock_guard<std::mutex> lock(j.mu);
  struct stat st;
  if (!j.active || !Stat(fd, &st)) return;
  if (S_ISDIR(st.st_mode)) {
    const std::string path = FdPath(fd);
    Begin(j, 'Y');
    PutBytes(j.record, path.data(), path.size());
    Emit(j);
    return;
  }
  if (!S_ISREG(st.st_mode)) return;
  const uint64_t ino = st.st_ino;
  j.files.erase(ino);
  Begin(j, 'D');
  Put64(j.record, ino);
  Emit(j);
}

void Created(int fd) {
  Journal& j = J();
  std::lock_guard<std::mutex> lock(j.mu);
  struct stat st;
  if (!j.active || !Stat(fd, &st)) return;
  const uint64_t ino = st.st_ino;
  const std::string path = FdPath(fd);
  Begin(j, 'C');
  Put64(j.record, ino);
  PutBytes(j.record, path.data(), path.size());
  Emit(j);
  Name(j, ino, fd);
  MarkDirty(j, ino, 0);
}

int Unlink(const char* path) {
  Journal& j = J();
  std::lock_guard<std::mutex> lock(j.mu);
  struct stat st;
  if (!j.active || ::lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
    return ::unlink(path) < 0 ? -errno : 0;
  }
  const std::string full = Canonical(path);
  const std::string grave = Bury(j, full, st.st_ino);
  Begin(j, 'U');
  Put64(j.record, st.st_ino);
  PutBytes(j.record, full.data(), full.size());
  j.record.push_back(0);
  PutBytes(j.record, grave.data(), grave.size());
  Emit(j);
  if (::unlink(path) < 0) {
    const int err = errno;
    Cancel(j);
    ::unlink(grave.c_str());
    return -err;
  }
  return 0;
}

int Rename(const char* from, const char* to) {
  Journal& j = J();
  std::lock_guard<std::mutex> lock(j.mu);
  struct stat st;
  if (!j.active || ::lstat(from, &st) < 0 || !S_ISREG(st.st_mode)) {
    return ::rename(from, to) < 0 ? -errno : 0;
  }
  const std::string src = Canonical(from);
  const std::string dst = Canonical(to);
  struct stat victim;
  uint64_t victim_ino = 0;
  std::string grave;
  if (::lstat(to, &victim) == 0 && S_ISREG(victim.st_mode) && victim.st_ino != st.st_ino) {
    victim_ino = victim.st_ino;
    grave = Bury(j, dst, victim_ino);
  }
  Begin(j, 'R');
  Put64(j.record, st.st_ino);
  Put64(j.record, victim_ino);
  PutBytes(j.record, src.data(), src.size());
  j.record.push_back(0);
  PutBytes(j.record, dst.data(), dst.size());
  j.record.push_back(0);
  PutBytes(j.record, grave.data(), grave.size());
  Emit(j);
  if (::rename(from, to) < 0) {
    const int err = errno;
    Cancel(j);
    if (!grave.empty()) ::unlink(grave.c_str());
    return -err;
  }
  return 0;
}

uint64_t BackgroundSyncBegin(const char* path, const char* dir) {
  Journal& j = J();
  std::lock_guard<std::mutex> lock(j.mu);
  struct stat st;
  if (!j.active || ::stat(path, &st) < 0 || !S_ISREG(st.st_mode)) return 0;
  const uint64_t token = ++j.tokens;
  const uint64_t ino = st.st_ino;
  // Changes from here on are not covered: they get a size and pre-images of their own.
  j.files.erase(ino);
  Begin(j, 'S');
  Put64(j.record, token);
  Put64(j.record, ino);
  Emit(j);
  if (dir != nullptr) {
    char resolved[PATH_MAX];
    if (::realpath(dir, resolved) == nullptr) Die("realpath");
    Begin(j, 'Q');
    Put64(j.record, token);
    PutBytes(j.record, resolved, std::strlen(resolved));
    Emit(j);
  }
  return token;
}

void BackgroundSynced(uint64_t token) {
  Journal& j = J();
  std::lock_guard<std::mutex> lock(j.mu);
  if (!j.active) return;
  Begin(j, 'E');
  Put64(j.record, token);
  Emit(j);
}

}  // namespace powerloss
}  // namespace walrus
