// Simulated power loss, test build only: behind the system-call seam (../seams.h; the hooks
// in seams.cc call it; it does nothing until Enable). While enabled for the process, every
// change the seam makes to a file or a directory is described in a side journal *before* it
// happens, and every successful fdatasync/fsync is recorded *after* it returns:
//
//   - the pre-image of each sector (512 B or 4 KiB) a write dirties for the first time since
//     that file's last sync, the file's size before its first change since that sync, and the
//     byte ranges written;
//   - "file durable" after an fdatasync/fsync of a regular file succeeded (its pre-images
//     are then obsolete), "directory durable" after an fsync of a directory;
//   - directory entries created, unlinked or renamed (an unlinked or replaced file is first
//     hard-linked into the journal directory, so that the power-loss step can bring it back).
//
// The journal is written with plain write(2) into the page cache, like the data: a SIGKILL
// keeps both, so after the process is killed the journal describes exactly which bytes of
// which file a power cut could still lose. test/fixtures/powerloss.mjs applies it.
//
// With skip_sync (the negative control) fdatasync/fsync return success without reaching the
// kernel and record nothing, so nothing is ever durable in the journal's eyes.
#ifndef WALRUS_TEST_POWERLOSS_H_
#define WALRUS_TEST_POWERLOSS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace walrus {
namespace powerloss {

// Enables the journal in `dir` (created by the caller; same file system as the data, for the
// hard links) with `sector` bytes per sector (512 or 4096). Process-wide; a second call with
// the same arguments does nothing. Returns 0, or -errno (EINVAL for different arguments).
int Enable(const std::string& dir, uint32_t sector, bool skip_sync);
bool Active();
// True when syncs are to be skipped (negative control).
bool SkipSync();

// Before `length` bytes are written to `fd` at `position` (pwritev, or an io_uring WRITEV
// before it is submitted).
void BeforeWrite(int fd, uint64_t position, uint64_t length);
// Before ftruncate/fallocate sets `fd`'s size to `new_size` (or at least that size).
void BeforeResize(int fd, uint64_t new_size);
// After an fdatasync/fsync of `fd` succeeded (a regular file or a directory).
void Synced(int fd);
// After open(2) created `path` (it did not exist before), as `fd`.
void Created(int fd);
// unlink(2) and rename(2) with their journal records; return 0 or -errno.
int Unlink(const char* path);
int Rename(const char* from, const char* to);
uint64_t BackgroundSyncBegin(const char* path, const char* dir);
void BackgroundSynced(uint64_t token);

}  // namespace powerloss
}  // namespace walrus

#endif  // WALRUS_TEST_POWERLOSS_H_
