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
#include "powerloss.h"
#include "sysio.h"

namespace walrus {
namespace {

// The thread's fault plan for file operations (tests only; see FaultPlan in sysio.h): every
// function below gets it as its data pointer, so each addon instance (thread) has its own.
FaultPlan* Plan(const Napi::CallbackInfo& info) { return static_cast<FaultPlan*>(info.Data()); }

// Throws the planned errno when this call of `kind` is the one the plan fails.
void Injected(const Napi::CallbackInfo& info, FaultPlan::Kind kind, const char* syscall) {
  const int rc = FaultCall(Plan(info), kind);
  if (rc < 0) ThrowErrno(info.Env(), -rc, syscall);
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = PathArg(env, info[0], "path");
  const int flags = static_cast<int>(IndexArg(env, info[1], INT_MAX, "flags"));
  const mode_t mode = static_cast<mode_t>(IndexArg(env, info[2], 07777, "mode"));
  Injected(info, FaultPlan::Kind::kOpen, "open");
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

// closeInBackground(fd): closes on a detached thread. The last close of an unlinked,
// written segment frees its blocks, which with ext4 `discard` took 33-50 ms: too long to
// stall a shard worker. Errors are not reported (there is nobody left to tell; the file is
// already unlinked and its data no longer needed).
void CloseInBackground(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(env, info[0], "fd");
  std::thread([fd] { ::close(fd); }).detach();
}

// datasyncInBackground(path): opens `path` read-only on a detached thread (its own open file
// description, so a writeback error it sees is still reported to every other descriptor of
// the file, lib/errseq.c) and fdatasyncs it; returns a handle for backgroundSyncResult. Used
// to make a segment's next allocation step durable (a size change is metadata fdatasync
// flushes) without stalling the shard worker on the writeback of its dirty data.
struct BackgroundSync {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int err = 0;
};
using BackgroundSyncHandle = std::shared_ptr<BackgroundSync>;
constexpr napi_type_tag kBackgroundSyncTag = {0x5b1e0c7d9a2f4e31ULL, 0x8c3d6f0a2b7e1945ULL};

Napi::Value DatasyncInBackground(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  auto state = std::make_shared<BackgroundSync>();
  const auto finish = [](const BackgroundSyncHandle& s, int err) {
    {
      std::lock_guard<std::mutex> lock(s->mu);
      s->done = true;
      s->err = err;
    }
    s->cv.notify_all();
  };
  try {
    std::thread([path, state, finish] {
      int fd;
      do fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW); while (fd < 0 && errno == EINTR);
      if (fd < 0) return finish(state, errno);
      // Not through the power-loss journal (tests): the journal then never credits this sync,
      // so a simulated power cut rolls the step back unless a foreground sync covered it,
      // which keeps the simulation as strict as if this sync had not happened.
      int rc;
      do rc = ::fdatasync(fd); while (rc < 0 && errno == EINTR);
      const int err = rc < 0 ? errno : 0;
      ::close(fd);
      finish(state, err);
    }).detach();
  } catch (const std::system_error& e) {
    finish(state, e.code().value() > 0 ? e.code().value() : EAGAIN);
  }
  auto handle = Napi::External<BackgroundSyncHandle>::New(
      env, new BackgroundSyncHandle(state), [](Napi::Env, BackgroundSyncHandle* h) { delete h; });
  if (napi_type_tag_object(env, handle, &kBackgroundSyncTag) != napi_ok) throw Napi::Error::New(env);
  return handle;
}

// backgroundSyncResult(handle, wait): -1 while the sync runs (unless `wait`: then blocks until
// it is done), else 0 or the errno of its open or fdatasync.
Napi::Value BackgroundSyncResult(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool tagged = false;
  if (!info[0].IsExternal() ||
      napi_check_object_type_tag(env, info[0], &kBackgroundSyncTag, &tagged) != napi_ok || !tagged) {
    ThrowType(env, "handle must come from datasyncInBackground");
  }
  if (!info[1].IsBoolean()) ThrowType(env, "wait must be a boolean");
  const BackgroundSyncHandle& s = *info[0].As<Napi::External<BackgroundSyncHandle>>().Data();
  std::unique_lock<std::mutex> lock(s->mu);
  if (info[1].As<Napi::Boolean>().Value()) s->cv.wait(lock, [&] { return s->done; });
  return Napi::Number::New(env, s->done ? s->err : -1);
}

Napi::Value Pread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(env, info[0], "fd");
  const Bytes buf = Uint8ArrayArg(env, info[1], "buf");
  const uint64_t position = IndexArg(env, info[2], kMaxSafeInteger, "position");
  Injected(info, FaultPlan::Kind::kRead, "pread");
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
  Injected(info, FaultPlan::Kind::kFileWrite, "pwritev");
  uint64_t written = 0;
  const int rc = WriteAll(fd, iov.data(), iov.size(), position, &written);
  if (rc < 0) ThrowErrno(env, -rc, "pwritev");
  return Napi::Number::New(env, static_cast<double>(written));
}

void Fdatasync(const Napi::CallbackInfo& info) {
  const int fd = FdArg(info.Env(), info[0], "fd");
  Injected(info, FaultPlan::Kind::kFileDataSync, "fdatasync");
  const int rc = DataSync(fd);
  if (rc < 0) ThrowErrno(info.Env(), -rc, "fdatasync");
}

void Fsync(const Napi::CallbackInfo& info) {
  const int fd = FdArg(info.Env(), info[0], "fd");
  Injected(info, FaultPlan::Kind::kFileSync, "fsync");
  const int rc = FullSync(fd);
  if (rc < 0) ThrowErrno(info.Env(), -rc, "fsync");
}

void Fallocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(env, info[0], "fd");
  const uint64_t offset = IndexArg(env, info[1], kMaxSafeInteger, "offset");
  const uint64_t length = IndexArg(env, info[2], kMaxSafeInteger - offset, "length");
  Injected(info, FaultPlan::Kind::kFallocate, "fallocate");
  int rc;
  do rc = sys_fallocate(fd, offset, length); while (rc == -EINTR);
  if (rc < 0) ThrowErrno(env, -rc, "fallocate");
}

void Ftruncate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(env, info[0], "fd");
  const uint64_t length = IndexArg(env, info[1], kMaxSafeInteger, "length");
  Injected(info, FaultPlan::Kind::kFtruncate, "ftruncate");
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
  Injected(info, FaultPlan::Kind::kRename, "rename");
  const int rc = sys_rename(from.c_str(), to.c_str());
  if (rc < 0) ThrowErrno(env, -rc, "rename");
}

void Unlink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = PathArg(env, info[0], "path");
  Injected(info, FaultPlan::Kind::kUnlink, "unlink");
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

// testPowerLoss(journalDir, sectorBytes, skipSync): turns on the power-loss journal for the
// whole process (tests only; powerloss.h). The shard worker calls it when
// WALRUS_TEST_POWERLOSS is set. Arguments are checked by the caller.
void TestPowerLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string dir = PathArg(env, info[0], "journalDir");
  const uint64_t sector = IndexArg(env, info[1], 4096, "sectorBytes");
  const int rc = powerloss::Enable(dir, static_cast<uint32_t>(sector), info[2].ToBoolean().Value());
  if (rc < 0) ThrowErrno(env, -rc, "open");
}

// injectFileFault(kind, nth, errno): the test seam for file operations (see FaultPlan).
void InjectFileFault(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  static const struct {
    const char* name;
    FaultPlan::Kind kind;
  } kKinds[] = {
      {"open", FaultPlan::Kind::kOpen},           {"pwritev", FaultPlan::Kind::kFileWrite},
      {"fdatasync", FaultPlan::Kind::kFileDataSync}, {"fsync", FaultPlan::Kind::kFileSync},
      {"fallocate", FaultPlan::Kind::kFallocate}, {"ftruncate", FaultPlan::Kind::kFtruncate},
      {"rename", FaultPlan::Kind::kRename},       {"unlink", FaultPlan::Kind::kUnlink},
      {"pread", FaultPlan::Kind::kRead},
  };
  const char* const usage =
      "kind must be one of 'open', 'pwritev', 'fdatasync', 'fsync', 'fallocate', 'ftruncate', "
      "'rename', 'unlink', 'pread'";
  if (!info[0].IsString()) ThrowType(env, usage);
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const FaultPlan::Kind* kind = nullptr;
  for (const auto& k : kKinds) {
    if (name == k.name) kind = &k.kind;
  }
  if (kind == nullptr) ThrowType(env, usage);
  const uint64_t nth = IndexArg(env, info[1], kMaxSafeInteger, "nth");
  const uint64_t err = IndexArg(env, info[2], 4095, "errno");
  if (nth > 0 && err == 0) ThrowRange(env, "errno must be an integer from 1 to 4095, got 0");
  SetFault(Plan(info), *kind, nth, static_cast<int>(err), false);
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
  // One plan per addon instance, freed with the exports object.
  FaultPlan* plan = new FaultPlan();
  exports.AddFinalizer([](Napi::Env, FaultPlan* p) { delete p; }, plan);
  exports.Set("open", Napi::Function::New(env, Open, "open", plan));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate", plan));
  exports.Set("close", Napi::Function::New(env, Close, "close", plan));
  exports.Set("closeInBackground", Napi::Function::New(env, CloseInBackground, "closeInBackground", plan));
  exports.Set("datasyncInBackground", Napi::Function::New(env, DatasyncInBackground, "datasyncInBackground"));
  exports.Set("backgroundSyncResult", Napi::Function::New(env, BackgroundSyncResult, "backgroundSyncResult"));
  exports.Set("pread", Napi::Function::New(env, Pread, "pread", plan));
  exports.Set("pwritev", Napi::Function::New(env, Pwritev, "pwritev", plan));
  exports.Set("fdatasync", Napi::Function::New(env, Fdatasync, "fdatasync", plan));
  exports.Set("fsync", Napi::Function::New(env, Fsync, "fsync", plan));
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate", plan));
  exports.Set("ftruncate", Napi::Function::New(env, Ftruncate, "ftruncate", plan));
  exports.Set("fstatSize", Napi::Function::New(env, FstatSize, "fstatSize", plan));
  exports.Set("rename", Napi::Function::New(env, Rename, "rename", plan));
  exports.Set("unlink", Napi::Function::New(env, Unlink, "unlink", plan));
  exports.Set("flock", Napi::Function::New(env, Flock, "flock", plan));
  exports.Set("setAffinity", Napi::Function::New(env, SetAffinity, "setAffinity", plan));
  exports.Set("testPowerLoss", Napi::Function::New(env, TestPowerLoss, "testPowerLoss", plan));
  exports.Set("injectFileFault", Napi::Function::New(env, InjectFileFault, "injectFileFault", plan));
  exports.Set("constants", Constants(env));
}

}  // namespace walrus
