// Thin wrappers over file system calls. Each retries EINTR where the call may be repeated
// safely, completes short reads and writes, and throws the errno of any other failure.
#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "args.h"
#include "bindings.h"
#include "errors.h"
#include "seams.h"
#include "sysio.h"

namespace walrus {
namespace {

// Test build only: throws the errno the thread's file fault plan injects into this call of
// `op` (seams.h). Nothing in the shipped build.
inline void Injected(Napi::Env env, seam::FileOp op, const char* syscall) {
  const int rc = seam::FileFault(op);
  if (rc < 0) ThrowErrno(env, -rc, syscall);
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = PathArg(env, info[0], "path");
  const int flags = static_cast<int>(IndexArg(env, info[1], INT_MAX, "flags"));
  const mode_t mode = static_cast<mode_t>(IndexArg(env, info[2], 07777, "mode"));
  Injected(env, seam::FileOp::kOpen, "open");
  int fd;
  do fd = sys_open(path.c_str(), flags, mode); while (fd == -EINTR);
  if (fd < 0) ThrowErrno(env, -fd, "open");
  return Napi::Number::New(env, fd);
}

// memfdCreate(name): an anonymous file (memfd_create, close-on-exec) for the 'memory'
// backend. It has a descriptor like a segment file, so the worker writes, reads and
// "fsyncs" it through the same calls (fdatasync on it succeeds at once), but it has no path:
// nothing is created in any directory, and its pages go when its last descriptor closes.
Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string name = PathArg(env, info[0], "name");
  const int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) ThrowErrno(env, errno, "memfd_create");
  return Napi::Number::New(env, fd);
}

void Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(env, info[0], "fd");
  // On Linux the descriptor is released even when close reports EINTR; retrying could close
  // a descriptor another thread has just been given.
  if (::close(fd) < 0 && errno != EINTR) ThrowErrno(env, errno, "close");
}

// closeInBackground(fd, dir?): closes on a detached thread, then with `dir` fsyncs that
// directory. The last close of an unlinked, written segment frees its blocks, which with ext4
// `discard` took 33-50 ms: too long to stall a shard worker; and the fsync that makes the
// unlink durable commits the file system's journal, which waits for the data of the segment
// being written. Errors are not reported (there is nobody left to tell: the file is already
// unlinked, its data no longer needed, and recovery finishes a deletion whose unlink was
// lost). The test build's power-loss journal never credits this fsync.
void CloseInBackground(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(env, info[0], "fd");
  const bool with_dir = !info[1].IsUndefined();
  const std::string dir = with_dir ? PathArg(env, info[1], "dir") : std::string();
  std::thread([fd, dir, with_dir] {
    ::close(fd);
    if (with_dir) {
      int d;
      do d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); while (d < 0 && errno == EINTR);
      if (d >= 0) {
        if (!seam::SkipSync()) ::fsync(d);
        ::close(d);
      }
    }
  }).detach();
}

// datasyncInBackground(path, dir?): opens `path` read-only on a detached thread (its own open
// file description, so a writeback error it sees is still reported to every other descriptor
// of the file, lib/errseq.c) and fdatasyncs it, then, with `dir`, fsyncs that directory;
// returns a handle for backgroundSyncResult. Used to make a segment's next allocation step
// durable (a size change is metadata fdatasync flushes), and a new spare segment with its
// directory entry, without stalling the shard worker on the writeback of its dirty data.
// The caller's writes of the file have all completed when it calls (the shard worker is
// synchronous): the test build's power-loss journal marks here what the sync covers.
struct BackgroundSync {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int err = 0;
  // The call that failed ("open", "fdatasync", "fsync"); "" when none did, or when the
  // thread could not be started (err is then that error, EAGAIN mostly).
  const char* syscall = "";
};
using BackgroundSyncHandle = std::shared_ptr<BackgroundSync>;
constexpr napi_type_tag kBackgroundSyncTag = {0x5b1e0c7d9a2f4e31ULL, 0x8c3d6f0a2b7e1945ULL};

// Opens `path` with `flags` and syncs it (fdatasync, or fsync with `full`): 0 or an errno,
// with the call that failed in *syscall.
int SyncPath(const std::string& path, int flags, bool full, const char** syscall) {
  int fd;
  do fd = ::open(path.c_str(), flags | O_CLOEXEC); while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    *syscall = "open";
    return errno;
  }
  int rc = 0;
  if (!seam::SkipSync()) {
    do rc = full ? ::fsync(fd) : ::fdatasync(fd); while (rc < 0 && errno == EINTR);
  }
  const int err = rc < 0 ? errno : 0;
  if (err != 0) *syscall = full ? "fsync" : "fdatasync";
  ::close(fd);
  return err;
}

Napi::Value DatasyncInBackground(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const bool with_dir = !info[1].IsUndefined();
  const std::string dir = with_dir ? PathArg(env, info[1], "dir") : std::string();
  auto state = std::make_shared<BackgroundSync>();
  const auto finish = [](const BackgroundSyncHandle& s, int err, const char* syscall) {
    {
      std::lock_guard<std::mutex> lock(s->mu);
      s->done = true;
      s->err = err;
      s->syscall = syscall;
    }
    s->cv.notify_all();
  };
  // Test build: the calling thread's file fault plan counts these syncs as its own calls
  // (an fdatasync, and an fsync with `dir`), and a planned failure is what the thread reports.
  const int file_fault = -seam::FileFault(seam::FileOp::kFdatasync);
  const int dir_fault = with_dir && file_fault == 0 ? -seam::FileFault(seam::FileOp::kFsync) : 0;
  const uint64_t token = seam::BackgroundSyncBegin(path.c_str(), with_dir ? dir.c_str() : nullptr);
  try {
    std::thread([path, dir, with_dir, token, state, finish, file_fault, dir_fault] {
      const char* syscall = "";
      int err = file_fault;
      if (err != 0) syscall = "fdatasync";
      else err = SyncPath(path, O_RDONLY | O_NOFOLLOW, false, &syscall);
      if (err == 0 && with_dir) {
        err = dir_fault;
        if (err != 0) syscall = "fsync";
        else err = SyncPath(dir, O_RDONLY | O_DIRECTORY, true, &syscall);
      }
      if (err == 0) seam::BackgroundSynced(token);
      finish(state, err, syscall);
    }).detach();
  } catch (const std::system_error& e) {
    finish(state, e.code().value() > 0 ? e.code().value() : EAGAIN, "");
  }
  return NewHandle(env, new BackgroundSyncHandle(state), kBackgroundSyncTag);
}

// backgroundSyncResult(handle, wait): -1 while the sync runs (unless `wait`: then blocks until
// it is done), else 0 or the errno of its open or fdatasync.
Napi::Value BackgroundSyncResult(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const BackgroundSyncHandle& s = *HandleArg<BackgroundSyncHandle>(
      env, info[0], kBackgroundSyncTag, "handle must come from datasyncInBackground");
  if (!info[1].IsBoolean()) ThrowType(env, "wait must be a boolean");
  std::unique_lock<std::mutex> lock(s->mu);
  if (info[1].As<Napi::Boolean>().Value()) s->cv.wait(lock, [&] { return s->done; });
  return Napi::Number::New(env, s->done ? s->err : -1);
}

// backgroundSyncSyscall(handle): the call that failed ("open", "fdatasync", "fsync"), or ""
// (none did, the sync still runs, or its thread could not be started).
Napi::Value BackgroundSyncSyscall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const BackgroundSyncHandle& s = *HandleArg<BackgroundSyncHandle>(
      env, info[0], kBackgroundSyncTag, "handle must come from datasyncInBackground");
  std::lock_guard<std::mutex> lock(s->mu);
  return Napi::String::New(env, s->done ? s->syscall : "");
}

Napi::Value Pread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(env, info[0], "fd");
  const Bytes buf = Uint8ArrayArg(env, info[1], "buf");
  const uint64_t position = IndexArg(env, info[2], kMaxSafeInteger, "position");
  Injected(env, seam::FileOp::kPread, "pread");
  const int64_t rc = ReadAll(fd, buf.data, buf.length, position);
  if (rc < 0) ThrowErrno(env, static_cast<int>(-rc), "pread");
  return Napi::Number::New(env, static_cast<double>(rc));
}

Napi::Value Pwritev(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(env, info[0], "fd");
  if (!info[1].IsArray()) ThrowType(env, "bufs must be an array of Uint8Array");
  const Napi::Array bufs = info[1].As<Napi::Array>();
  const uint64_t position = IndexArg(env, info[2], kMaxSafeInteger, "position");
  // Element reads may run getters; take every element before holding any data pointer.
  const uint32_t count = bufs.Length();
  std::vector<napi_value> values(count);
  for (uint32_t i = 0; i < count; i++) values[i] = bufs.Get(i);
  std::vector<struct iovec> iov(count);
  uint64_t total = 0;
  for (uint32_t i = 0; i < count; i++) {
    const Bytes bytes = Uint8ArrayArg(env, values[i], "every element of bufs");
    iov[i].iov_base = bytes.data;
    iov[i].iov_len = bytes.length;
    total += bytes.length;
  }
  if (total > kMaxSafeInteger - position) {
    ThrowRange(env, "position + total length exceeds 2^53 - 1");
  }
  Injected(env, seam::FileOp::kPwritev, "pwritev");
  uint64_t written = 0;
  const int rc = WriteAll(fd, iov.data(), iov.size(), position, &written);
  if (rc < 0) ThrowErrno(env, -rc, "pwritev");
  return Napi::Number::New(env, static_cast<double>(written));
}

void Fdatasync(const Napi::CallbackInfo& info) {
  const int fd = FdArg(info.Env(), info[0], "fd");
  Injected(info.Env(), seam::FileOp::kFdatasync, "fdatasync");
  const int rc = DataSync(fd);
  if (rc < 0) ThrowErrno(info.Env(), -rc, "fdatasync");
}

void Fsync(const Napi::CallbackInfo& info) {
  const int fd = FdArg(info.Env(), info[0], "fd");
  Injected(info.Env(), seam::FileOp::kFsync, "fsync");
  const int rc = FullSync(fd);
  if (rc < 0) ThrowErrno(info.Env(), -rc, "fsync");
}

void Fallocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(env, info[0], "fd");
  const uint64_t offset = IndexArg(env, info[1], kMaxSafeInteger, "offset");
  const uint64_t length = IndexArg(env, info[2], kMaxSafeInteger - offset, "length");
  Injected(env, seam::FileOp::kFallocate, "fallocate");
  int rc;
  do rc = sys_fallocate(fd, offset, length); while (rc == -EINTR);
  if (rc < 0) ThrowErrno(env, -rc, "fallocate");
}

void Ftruncate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(env, info[0], "fd");
  const uint64_t length = IndexArg(env, info[1], kMaxSafeInteger, "length");
  Injected(env, seam::FileOp::kFtruncate, "ftruncate");
  int rc;
  do rc = sys_ftruncate(fd, length); while (rc == -EINTR);
  if (rc < 0) ThrowErrno(env, -rc, "ftruncate");
}

Napi::Value FstatSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct stat st;
  if (::fstat(FdArg(env, info[0], "fd"), &st) < 0) ThrowErrno(env, errno, "fstat");
  return Napi::Number::New(env, static_cast<double>(st.st_size));
}

void Rename(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string from = PathArg(env, info[0], "from");
  const std::string to = PathArg(env, info[1], "to");
  Injected(env, seam::FileOp::kRename, "rename");
  const int rc = sys_rename(from.c_str(), to.c_str());
  if (rc < 0) ThrowErrno(env, -rc, "rename");
}

void Unlink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = PathArg(env, info[0], "path");
  Injected(env, seam::FileOp::kUnlink, "unlink");
  const int rc = sys_unlink(path.c_str());
  if (rc < 0) ThrowErrno(env, -rc, "unlink");
}

Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(env, info[0], "fd");
  const int operation = (info[1].ToBoolean().Value() ? LOCK_EX : LOCK_SH) | LOCK_NB;
  int rc;
  do rc = ::flock(fd, operation); while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "flock");
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value SetAffinity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int cpu = static_cast<int>(IndexArg(env, info[0], 65535, "cpu"));
  cpu_set_t* set = CPU_ALLOC(cpu + 1);
  if (set == nullptr) ThrowErrno(env, ENOMEM, "sched_setaffinity");
  const size_t size = CPU_ALLOC_SIZE(cpu + 1);
  CPU_ZERO_S(size, set);
  CPU_SET_S(cpu, size, set);
  // pid 0 is the calling thread, not the whole process.
  const int rc = ::sched_setaffinity(0, size, set);
  const int err = errno;
  CPU_FREE(set);
  if (rc < 0) {
    if (err == EINVAL || err == EPERM) return Napi::Boolean::New(env, false);
    ThrowErrno(env, err, "sched_setaffinity");
  }
  return Napi::Boolean::New(env, true);
}

Napi::Object Constants(Napi::Env env) {
  Napi::Object constants = Napi::Object::New(env);
  constants.Set("O_RDONLY", O_RDONLY);
  constants.Set("O_RDWR", O_RDWR);
  constants.Set("O_CREAT", O_CREAT);
  constants.Set("O_EXCL", O_EXCL);
  constants.Set("O_CLOEXEC", O_CLOEXEC);
  constants.Set("O_NOFOLLOW", O_NOFOLLOW);
  constants.Set("O_DIRECTORY", O_DIRECTORY);
  constants.Freeze();
  return constants;
}

}  // namespace

void InitFileOps(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("closeInBackground", Napi::Function::New(env, CloseInBackground, "closeInBackground"));
  exports.Set("datasyncInBackground", Napi::Function::New(env, DatasyncInBackground, "datasyncInBackground"));
  exports.Set("backgroundSyncResult", Napi::Function::New(env, BackgroundSyncResult, "backgroundSyncResult"));
  exports.Set("backgroundSyncSyscall", Napi::Function::New(env, BackgroundSyncSyscall, "backgroundSyncSyscall"));
  exports.Set("pread", Napi::Function::New(env, Pread, "pread"));
  exports.Set("pwritev", Napi::Function::New(env, Pwritev, "pwritev"));
  exports.Set("fdatasync", Napi::Function::New(env, Fdatasync, "fdatasync"));
  exports.Set("fsync", Napi::Function::New(env, Fsync, "fsync"));
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
  exports.Set("ftruncate", Napi::Function::New(env, Ftruncate, "ftruncate"));
  exports.Set("fstatSize", Napi::Function::New(env, FstatSize, "fstatSize"));
  exports.Set("rename", Napi::Function::New(env, Rename, "rename"));
  exports.Set("unlink", Napi::Function::New(env, Unlink, "unlink"));
  exports.Set("flock", Napi::Function::New(env, Flock, "flock"));
  exports.Set("setAffinity", Napi::Function::New(env, SetAffinity, "setAffinity"));
  exports.Set("constants", Constants(env));
}

}  // namespace walrus
