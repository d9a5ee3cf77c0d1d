// IoContext: the ring SharedArrayBuffer a shard worker writes from, an optional io_uring
// instance, and writeBatch. Validation here is the memory-safety net: every iovec must lie
// inside its buffer before the kernel is given its address.
#include <algorithm>
#include <cerrno>
#include <climits>
#include <string>
#include <vector>

#include "args.h"
#include "bindings.h"
#include "errors.h"
#include "layout.h"
#include "mapped_files.h"
#include "seams.h"
#include "uring.h"
#include "write_batch.h"

namespace walrus {
namespace {

constexpr napi_type_tag kIoContextTag = {0x8d2b6c0f5e3a4711ULL, 0xa7c4e9d21b0f3c58ULL};
constexpr uint32_t kMaxQueueDepth = 32768;  // IORING_MAX_ENTRIES

// A single read the compiler may not repeat (see BuildBatch).
inline double Once(const double* p) { return *static_cast<const volatile double*>(p); }

static_assert(WALRUS_WRITE_OP_FIELDS == 4, "ops are [fd, position, firstIov, iovCount]");
static_assert(WALRUS_IOV_FIELDS == 3, "iovs are [source, offset, length]");
static_assert(WALRUS_IOV_SOURCE_RING == -1, "the ring is source -1");

class IoContext : public Napi::ObjectWrap<IoContext> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "IoContext",
                       {InstanceAccessor<&IoContext::GetUring>("uring"),
                        InstanceMethod<&IoContext::WriteBatchJs>("writeBatch"),
                        InstanceAccessor<&IoContext::GetMapped>("mapped"),
                        InstanceAccessor<&IoContext::GetMappedBytes>("mappedBytes"),
#ifdef WALRUS_TEST_SEAMS
                        InstanceMethod<&IoContext::InjectFaultJs>("injectFault"),
#endif
                        InstanceMethod<&IoContext::MapJs>("map"),
                        InstanceMethod<&IoContext::UnmapJs>("unmap"),
                        InstanceMethod<&IoContext::ReadMappedJs>("readMapped"),
                        InstanceMethod<&IoContext::CloseJs>("close")});
  }

  explicit IoContext(const Napi::CallbackInfo& info);
  ~IoContext() override { Release(); }

 private:
  // Clears busy_ however writeBatch leaves.
  class BusyScope {
   public:
    explicit BusyScope(bool& busy) : busy_(busy) { busy_ = true; }
    ~BusyScope() { busy_ = false; }
    BusyScope(const BusyScope&) = delete;
    BusyScope& operator=(const BusyScope&) = delete;

   private:
    bool& busy_;
  };

  static void OnEnvCleanup(void* self) {
    auto* context = static_cast<IoContext*>(self);
    context->hook_registered_ = false;  // Node removes a hook once it has run
    context->ring_.Close();
    context->maps_.UnmapAll();
  }

  void CheckTag(const Napi::CallbackInfo& info) const;
  Napi::Value GetUring(const Napi::CallbackInfo& info);
  Napi::Value GetMapped(const Napi::CallbackInfo& info);
  Napi::Value GetMappedBytes(const Napi::CallbackInfo& info);
  void MapJs(const Napi::CallbackInfo& info);
  void UnmapJs(const Napi::CallbackInfo& info);
  Napi::Value ReadMappedJs(const Napi::CallbackInfo& info);
  void WriteBatchJs(const Napi::CallbackInfo& info);
  void CloseJs(const Napi::CallbackInfo& info);
#ifdef WALRUS_TEST_SEAMS
  void InjectFaultJs(const Napi::CallbackInfo& info);
#endif
  void BuildBatch(Napi::Env env, const Bytes& ops, uint64_t op_count, const Bytes& iovs);
  void Release();

  napi_env env_;
  bool uring_ = false;
  bool mapped_ = false;  // the mmap backend: writes are copies into maps_, syncs are msync
  bool closed_ = false;
  bool busy_ = false;
  bool hook_registered_ = false;
  Napi::ObjectReference ring_view_;  // a Uint8Array over the ring; keeps the SAB alive
  uint8_t* ring_base_ = nullptr;
  size_t ring_bytes_ = 0;
  Ring ring_;
  WriteBatch batch_;
  UringScratch scratch_;
  seam::ContextFaults faults_;  // test build only: see injectFault (empty otherwise)
  MappedFiles maps_;
  std::vector<napi_value> ext_values_;
  std::vector<Bytes> ext_;
};

IoContext::IoContext(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<IoContext>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (napi_type_tag_object(env, info.This(), &kIoContextTag) != napi_ok) {
    throw Napi::Error::New(env);
  }
  // Node-API (version 8) has no accessor for a SharedArrayBuffer's memory, but typed arrays
  // over one report theirs. A plain ArrayBuffer is refused: it could be detached while the
  // kernel writes from it.
  napi_value ring = info[0];
  bool is_array_buffer = false;
  napi_valuetype type;
  if (napi_typeof(env, ring, &type) != napi_ok || type != napi_object ||
      napi_is_arraybuffer(env, ring, &is_array_buffer) != napi_ok || is_array_buffer) {
    ThrowType(env, "ring must be a SharedArrayBuffer");
  }
  Napi::Value uint8_array = env.Global().Get("Uint8Array");
  if (!uint8_array.IsFunction()) ThrowType(env, "globalThis.Uint8Array is not a function");
  Napi::Object view = uint8_array.As<Napi::Function>().New({ring});
  napi_typedarray_type view_type;
  size_t length = 0;
  void* data = nullptr;
  napi_value buffer = nullptr;
  bool same = false;
  if (napi_get_typedarray_info(env, view, &view_type, &length, &data, &buffer, nullptr) !=
          napi_ok ||
      view_type != napi_uint8_array || napi_strict_equals(env, buffer, ring, &same) != napi_ok ||
      !same) {
    // Not an ArrayBuffer, yet the buffer of a typed array: only a SharedArrayBuffer is both.
    ThrowType(env, "ring must be a SharedArrayBuffer");
  }
  ring_view_ = Napi::Persistent(view);
  ring_base_ = static_cast<uint8_t*>(data);
  ring_bytes_ = data == nullptr ? 0 : length;

  if (!info[1].IsBoolean()) ThrowType(env, "useUring must be a boolean");
  uring_ = info[1].As<Napi::Boolean>().Value();
  const uint64_t depth = IndexArg(env, info[2], kMaxQueueDepth, "queueDepth");
  if (depth == 0) ThrowRange(env, "queueDepth must be an integer from 1 to 32768, got 0");
  if (!info[3].IsUndefined() && !info[3].IsBoolean()) ThrowType(env, "mapped must be a boolean");
  mapped_ = info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
  if (mapped_ && uring_) ThrowType(env, "mapped and useUring cannot both be true");
  if (uring_) {
    const int rc = ring_.Init(static_cast<unsigned>(depth));
    if (rc < 0) ThrowErrno(env, -rc, "io_uring_setup");
  }
  if (uring_ || mapped_) {
    // A worker thread that exits without close() must not leak the ring descriptor or the
    // mappings.
    if (napi_add_env_cleanup_hook(env, OnEnvCleanup, this) != napi_ok) {
      ring_.Close();
      throw Napi::Error::New(env);
    }
    hook_registered_ = true;
  }
}

void IoContext::CheckTag(const Napi::CallbackInfo& info) const {
  bool tagged = false;
  if (napi_check_object_type_tag(info.Env(), info.This(), &kIoContextTag, &tagged) != napi_ok ||
      !tagged) {
    ThrowType(info.Env(), "receiver is not an IoContext");
  }
}

Napi::Value IoContext::GetUring(const Napi::CallbackInfo& info) {
  CheckTag(info);
  return Napi::Boolean::New(info.Env(), uring_);
}

Napi::Value IoContext::GetMapped(const Napi::CallbackInfo& info) {
  CheckTag(info);
  return Napi::Boolean::New(info.Env(), mapped_);
}

Napi::Value IoContext::GetMappedBytes(const Napi::CallbackInfo& info) {
  CheckTag(info);
  return Napi::Number::New(info.Env(), static_cast<double>(maps_.mapped_bytes()));
}

// map(fd, length, unsynced = false): registers fd (MappedFiles::Map); windows are mapped as
// writes need them.
// Only on a mapped context.
void IoContext::MapJs(const Napi::CallbackInfo& info) {
  CheckTag(info);
  Napi::Env env = info.Env();
  if (!mapped_) throw Napi::Error::New(env, "map() needs an IoContext created with mapped = true");
  if (closed_) ThrowErrno(env, EBADF, "mmap");
  const int fd = FdArg(env, info[0], "fd");
  const uint64_t length = IndexArg(env, info[1], kMaxSafeInteger, "length");
  if (length == 0) ThrowRange(env, "length must be an integer from 1 to 2^53 - 1, got 0");
  IoFailure failure;
  if (!info[2].IsUndefined() && !info[2].IsBoolean()) ThrowType(env, "unsynced must be a boolean");
  const bool unsynced = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  if (!maps_.Map(fd, length, unsynced, &failure)) ThrowErrno(env, failure.err, failure.syscall);
}

void IoContext::UnmapJs(const Napi::CallbackInfo& info) {
  CheckTag(info);
  Napi::Env env = info.Env();
  if (busy_) throw Napi::Error::New(env, "unmap called during writeBatch");
  const int rc = maps_.Unmap(FdArg(env, info[0], "fd"));
  if (rc < 0) ThrowErrno(env, -rc, "munmap");
}

// readMapped(fd, buf, position): copies from fd's window, or preads; returns the bytes copied.
Napi::Value IoContext::ReadMappedJs(const Napi::CallbackInfo& info) {
  CheckTag(info);
  Napi::Env env = info.Env();
  const int fd = FdArg(env, info[0], "fd");
  const Bytes buf = Uint8ArrayArg(env, info[1], "buf");
  const uint64_t position = IndexArg(env, info[2], kMaxSafeInteger, "position");
  const int64_t rc = maps_.Read(fd, buf.data, buf.length, position);
  if (rc < 0) ThrowErrno(env, static_cast<int>(-rc), rc == -EBADF ? "mmap" : "pread");
  return Napi::Number::New(env, static_cast<double>(rc));
}

void IoContext::Release() {
  if (hook_registered_) {
    napi_remove_env_cleanup_hook(env_, OnEnvCleanup, this);
    hook_registered_ = false;
  }
  ring_.Close();
  maps_.UnmapAll();
}

void IoContext::CloseJs(const Napi::CallbackInfo& info) {
  CheckTag(info);
  if (busy_) throw Napi::Error::New(info.Env(), "IoContext.close() called during writeBatch");
  if (closed_) return;
  closed_ = true;
  Release();
  ring_view_.Reset();
  ring_base_ = nullptr;
  ring_bytes_ = 0;
}

void IoContext::WriteBatchJs(const Napi::CallbackInfo& info) {
  CheckTag(info);
  Napi::Env env = info.Env();
  if (busy_) throw Napi::Error::New(env, "writeBatch is already running on this IoContext");
  BusyScope busy(busy_);
  const char* const closed_syscall = mapped_ ? "msync" : uring_ ? "io_uring_enter" : "pwritev";
  if (closed_) ThrowErrno(env, EBADF, closed_syscall);

  // Reading array elements may run JavaScript (getters); it happens before any data pointer
  // is taken, so nothing run here can detach or resize a buffer in use, and busy_ refuses
  // close() and a nested writeBatch from such code.
  if (!info[3].IsArray()) ThrowType(env, "ext must be an array of Uint8Array");
  const Napi::Array ext = info[3].As<Napi::Array>();
  const uint32_t ext_count = ext.Length();
  ext_values_.resize(ext_count);
  for (uint32_t i = 0; i < ext_count; i++) ext_values_[i] = ext.Get(i);

  const Bytes ops = TypedArrayArg(env, info[0], napi_float64_array, "ops");
  const uint64_t op_count = IndexArg(env, info[1], ops.length / WALRUS_WRITE_OP_FIELDS, "opCount");
  const Bytes iovs = TypedArrayArg(env, info[2], napi_float64_array, "iovs");
  const Bytes sync = TypedArrayArg(env, info[4], napi_int32_array, "syncFds");
  const uint64_t sync_count = IndexArg(env, info[5], sync.length, "syncCount");
  ext_.resize(ext_count);
  for (uint32_t i = 0; i < ext_count; i++) {
    ext_[i] = Uint8ArrayArg(env, ext_values_[i], "every element of ext");
  }

  BuildBatch(env, ops, op_count, iovs);
  const int32_t* const sync_fds = reinterpret_cast<const int32_t*>(sync.data);
  for (uint64_t i = 0; i < sync_count; i++) {
    const int32_t fd = *static_cast<const volatile int32_t*>(sync_fds + i);
    if (fd < 0) {
      ThrowRange(env, "syncFds[" + std::to_string(i) + "] must be a file descriptor, got " +
                          std::to_string(fd));
    }
    batch_.sync_fds.push_back(fd);
  }
  std::sort(batch_.sync_fds.begin(), batch_.sync_fds.end());
  batch_.sync_fds.erase(std::unique(batch_.sync_fds.begin(), batch_.sync_fds.end()),
                        batch_.sync_fds.end());

  if (mapped_) {
    // The memory-safety net of the copies: every byte goes inside a mapping.
    const std::string problem = maps_.Check(batch_);
    if (!problem.empty()) ThrowRange(env, "writeBatch on a mapped IoContext: " + problem);
  }
  IoFailure failure;
  bool ok;
  {
    seam::BatchScope faults(&faults_);
    ok = mapped_  ? maps_.Run(batch_, &failure)
         : uring_ ? RunUring(ring_, batch_, scratch_, &failure)
                  : RunPwritev(batch_, &failure);
  }
  if (!ok) ThrowErrno(env, failure.err, failure.syscall);
}

#ifdef WALRUS_TEST_SEAMS
// injectFault(kind: 'write' | 'fsync' | 'map', nth, errno, short): test build only (the
// arguments are read in native/test/seams.cc; the plan is seam::ContextFaults).
void IoContext::InjectFaultJs(const Napi::CallbackInfo& info) {
  CheckTag(info);
  if (busy_) throw Napi::Error::New(info.Env(), "injectFault called during writeBatch");
  InjectContextFault(info, &faults_);
}
#endif

void IoContext::BuildBatch(Napi::Env env, const Bytes& ops, uint64_t op_count, const Bytes& iovs) {
  const double* const op = reinterpret_cast<const double*>(ops.data);
  const double* const iov = reinterpret_cast<const double*>(iovs.data);
  const uint64_t iov_total = iovs.length / WALRUS_IOV_FIELDS;
  batch_.Clear();
  // Every field is copied once before it is checked: the arrays may be views of memory that
  // another thread can change, and the value checked must be the value used.
  for (uint64_t k = 0; k < op_count; k++) {
    const double* const op_at = op + k * WALRUS_WRITE_OP_FIELDS;
    const double fields[WALRUS_WRITE_OP_FIELDS] = {Once(op_at), Once(op_at + 1), Once(op_at + 2),
                                                   Once(op_at + 3)};
    const auto name = [k] { return "ops[" + std::to_string(k) + "]"; };
    if (!IsIndex(fields[0], INT_MAX)) ThrowRange(env, name() + ": fd must be a file descriptor");
    if (!IsIndex(fields[1], kMaxSafeInteger)) {
      ThrowRange(env, name() + ": position must be an integer from 0 to 2^53 - 1");
    }
    if (!IsIndex(fields[2], iov_total) ||
        !IsIndex(fields[3], iov_total - static_cast<uint64_t>(fields[2]))) {
      ThrowRange(env, name() + ": iovecs [firstIov, firstIov + iovCount) must lie inside iovs");
    }
    const int fd = static_cast<int>(fields[0]);
    uint64_t position = static_cast<uint64_t>(fields[1]);
    const uint64_t first = static_cast<uint64_t>(fields[2]);
    const uint64_t end = first + static_cast<uint64_t>(fields[3]);
    WritePiece piece{fd, position, batch_.iov.size(), 0, 0};
    for (uint64_t j = first; j < end; j++) {
      const double* const iov_at = iov + j * WALRUS_IOV_FIELDS;
      const double v[WALRUS_IOV_FIELDS] = {Once(iov_at), Once(iov_at + 1), Once(iov_at + 2)};
      const double source = v[0];
      Bytes from;
      if (source == WALRUS_IOV_SOURCE_RING) {
        from = Bytes{ring_base_, ring_bytes_};
      } else if (IsIndex(source, ext_.size()) && source < static_cast<double>(ext_.size())) {
        from = ext_[static_cast<size_t>(source)];
      } else {
        ThrowRange(env, "iovs[" + std::to_string(j) + "]: source must be -1 or an index of ext");
      }
      if (!IsIndex(v[1], from.length) ||
          !IsIndex(v[2], from.length - static_cast<uint64_t>(v[1]))) {
        ThrowRange(env, "iovs[" + std::to_string(j) +
                            "]: [offset, offset + length) must lie inside its buffer");
      }
      const uint64_t length = static_cast<uint64_t>(v[2]);
      if (length > kMaxSafeInteger - position - piece.bytes) {
        ThrowRange(env, name() + ": position + length exceeds 2^53 - 1");
      }
      batch_.iov.push_back(iovec{from.data + static_cast<uint64_t>(v[1]), length});
      piece.iov_count++;
      piece.bytes += length;
      if (piece.iov_count == IOV_MAX) {
        if (piece.bytes > 0) batch_.pieces.push_back(piece);
        position += piece.bytes;
        piece = WritePiece{fd, position, batch_.iov.size(), 0, 0};
      }
    }
    if (piece.bytes > 0) batch_.pieces.push_back(piece);
  }
}

}  // namespace

void InitIoContext(Napi::Env env, Napi::Object exports) {
  exports.Set("IoContext", IoContext::Define(env));
}

}  // namespace walrus
