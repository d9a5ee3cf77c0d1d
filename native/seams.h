// Test seams: the points where the test build of the addon (target walrus_test in
// binding.gyp: compiled with WALRUS_TEST_SEAMS, plus the sources of native/test/) injects
// faults and keeps the power-loss journal. In the shipped build (walrus.node) every hook
// below is an empty inline function or a constant, and the compiler removes it: that addon
// holds no fault-injection or power-loss code, and no environment variable can turn any on.
//
// Two kinds of seams, both only in the test build (docs/DURABILITY.md):
//   - faults: a plan per write context (IoContext.injectFault) fails its nth write, sync or
//     mmap; a plan per thread (testSeams.fileFault) fails the nth call of a file operation;
//   - the power-loss journal (native/test/powerloss.h): every change to a file or directory
//     is journaled before it happens and every sync after it succeeded; with `skip_sync`
//     fdatasync and fsync report success without reaching the kernel.
#ifndef WALRUS_SEAMS_H_
#define WALRUS_SEAMS_H_

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

namespace walrus {
namespace seam {

// The file operations of fileops.cc a thread's fault plan can fail.
enum class FileOp { kOpen, kPwritev, kFdatasync, kFsync, kFallocate, kFtruncate, kRename, kUnlink, kPread };

// The operations of a write batch a context's fault plan counts besides writes: an fdatasync
// (or msync, its mmap-backend equivalent) and an mmap of a window.
enum class BatchOp { kSync, kMap };

#ifdef WALRUS_TEST_SEAMS

inline constexpr bool kEnabled = true;

// --- The power-loss journal (native/test/seams.cc); each does nothing until it is enabled.

// Before a pwritev of iov[0, count) at `position`, or an io_uring write of `length` bytes.
void BeforeWritev(int fd, const struct iovec* iov, int count, uint64_t position);
void BeforeWrite(int fd, uint64_t position, uint64_t length);
// Before ftruncate/fallocate sets fd's size to `new_size` (or at least that size).
void BeforeResize(int fd, uint64_t new_size);
// True when fdatasync and fsync are to report success without syncing (negative control).
bool SkipSync();
// After an fdatasync/fsync of fd succeeded.
void Synced(int fd);
// Before open(path, flags): whether it will create the file; after it did, as fd.
bool WillCreate(const char* path, int flags);
void Created(int fd);
// unlink(2) and rename(2) journaled: true with *rc (0 or -errno) when the journal performed
// the call, false when the caller is to make it.
bool Unlink(const char* path, int* rc);
bool Rename(const char* from, const char* to, int* rc);
// A sync started by the calling thread to finish on another one (datasyncInBackground):
// marks what the journal holds of `path` (and of the entries of `dir`, if not null) now, and
// returns a token (0 when the journal is off). Once that sync succeeded, BackgroundSynced
// credits exactly what was marked: changes made after the mark stay undurable. The caller
// makes the mark only when every write of the file it journaled has completed.
uint64_t BackgroundSyncBegin(const char* path, const char* dir);
void BackgroundSynced(uint64_t token);

// --- Faults (native/test/faults.cc).

// Counts one call of `op` against this thread's file plan: -errno when it is the planned one
// (the caller then skips the system call), else 0.
int FileFault(FileOp op);

// A context's fault plan (native/test/faults.h).
struct ContextFaults;

// While it lives, the calling thread's write batch runs through `faults`.
class BatchScope {
 public:
  explicit BatchScope(ContextFaults* faults);
  ~BatchScope();
  BatchScope(const BatchScope&) = delete;
  BatchScope& operator=(const BatchScope&) = delete;

 private:
  ContextFaults* saved_;
};

// A pwritev of the running batch: true with *rc set when the plan took the call (it failed
// it, or wrote only half for real), false when the caller is to make it.
bool InterceptWrite(int fd, const struct iovec* iov, int count, uint64_t position, ssize_t* rc);
// Counts one `op` of the running batch: -errno when it is the planned one, else 0.
int BatchFault(BatchOp op);
// An io_uring completion of the running batch as it is reaped: rewrites *res as the injected
// error or, for a short write of a `bytes`-byte request, as half of it.
void Completion(bool is_write, uint64_t bytes, int32_t* res);

#else  // the shipped build: nothing

inline constexpr bool kEnabled = false;

inline void BeforeWritev(int, const struct iovec*, int, uint64_t) {}
inline void BeforeWrite(int, uint64_t, uint64_t) {}
inline void BeforeResize(int, uint64_t) {}
inline constexpr bool SkipSync() { return false; }
inline void Synced(int) {}
inline constexpr bool WillCreate(const char*, int) { return false; }
inline void Created(int) {}
inline constexpr bool Unlink(const char*, int*) { return false; }
inline constexpr bool Rename(const char*, const char*, int*) { return false; }
inline constexpr uint64_t BackgroundSyncBegin(const char*, const char*) { return 0; }
inline void BackgroundSynced(uint64_t) {}

inline constexpr int FileFault(FileOp) { return 0; }
struct ContextFaults {};
class BatchScope {
 public:
  explicit BatchScope(ContextFaults*) {}
};
inline constexpr bool InterceptWrite(int, const struct iovec*, int, uint64_t, ssize_t*) { return false; }
inline constexpr int BatchFault(BatchOp) { return 0; }
inline void Completion(bool, uint64_t, int32_t*) {}

#endif  // WALRUS_TEST_SEAMS

}  // namespace seam
}  // namespace walrus

#ifdef WALRUS_TEST_SEAMS
#include "test/faults.h"
#endif

#endif  // WALRUS_SEAMS_H_
