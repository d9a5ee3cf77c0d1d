// The test build's seams seen from JavaScript, and the power-loss hooks of ../seams.h.
//
// The addon of the test build (walrus_test.node) exports `testSeams`:
//   beforeRecovery(env)        a shard worker calls it before recovery touches a file: reads
//                              WALRUS_TEST_FAULT and WALRUS_TEST_POWERLOSS from `env` (the
//                              worker's process.env), throws a TypeError when either is
//                              malformed, enables the power-loss journal and applies a file
//                              fault to the calling thread; returns what it did (for the
//                              worker's debug log)
//   onContexts(env, contexts)  applies a context fault of WALRUS_TEST_FAULT to each context
//                              (IoContext.injectFault) right after the worker created them
//   powerLoss(journalDir, sectorBytes, skipSync)   enables the journal (powerloss.h)
//   fileFault(kind, nth, errno)                    sets the calling thread's file plan
// and IoContext gets injectFault(kind, nth, errno, short) (faults.h). The shipped addon has
// none of these, so the variables mean nothing to it.
#include <fcntl.h>
#include <sys/stat.h>

#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

#include "../args.h"
#include "../bindings.h"
#include "../errors.h"
#include "../seams.h"
#include "faults.h"
#include "powerloss.h"

namespace walrus {

namespace seam {

void BeforeWritev(int fd, const struct iovec* iov, int count, uint64_t position) {
  if (!powerloss::Active()) return;
  uint64_t total = 0;
  for (int i = 0; i < count; i++) total += iov[i].iov_len;
  powerloss::BeforeWrite(fd, position, total);
}

void BeforeWrite(int fd, uint64_t position, uint64_t length) {
  if (powerloss::Active()) powerloss::BeforeWrite(fd, position, length);
}

void BeforeResize(int fd, uint64_t new_size) {
  if (powerloss::Active()) powerloss::BeforeResize(fd, new_size);
}

bool SkipSync() { return powerloss::SkipSync(); }

void Synced(int fd) {
  if (powerloss::Active() && !powerloss::SkipSync()) powerloss::Synced(fd);
}

bool WillCreate(const char* path, int flags) {
  if (!powerloss::Active() || (flags & O_CREAT) == 0) return false;
  struct stat st;
  return (flags & O_EXCL) != 0 || ::lstat(path, &st) < 0;
}

void Created(int fd) { powerloss::Created(fd); }

bool Unlink(const char* path, int* rc) {
  if (!powerloss::Active()) return false;
  *rc = powerloss::Unlink(path);
  return true;
}

bool Rename(const char* from, const char* to, int* rc) {
  if (!powerloss::Active()) return false;
  *rc = powerloss::Rename(from, to);
  return true;
}

uint64_t BackgroundSyncBegin(const char* path, const char* dir) {
  if (!powerloss::Active() || powerloss::SkipSync()) return 0;
  return powerloss::BackgroundSyncBegin(path, dir);
}

void BackgroundSynced(uint64_t token) {
  if (token != 0) powerloss::BackgroundSynced(token);
}

}  // namespace seam

namespace {

const struct {
  const char* name;
  seam::FileOp op;
} kFileOps[] = {
    {"open", seam::FileOp::kOpen},           {"pwritev", seam::FileOp::kPwritev},
    {"fdatasync", seam::FileOp::kFdatasync}, {"fsync", seam::FileOp::kFsync},
    {"fallocate", seam::FileOp::kFallocate}, {"ftruncate", seam::FileOp::kFtruncate},
    {"rename", seam::FileOp::kRename},       {"unlink", seam::FileOp::kUnlink},
    {"pread", seam::FileOp::kPread},
};

const seam::FileOp* FindFileOp(const std::string& name) {
  for (const auto& k : kFileOps) {
    if (name == k.name) return &k.op;
  }
  return nullptr;
}

// Sets the calling thread's file plan from JavaScript values (fileFault's checks).
void SetFileFaultArgs(Napi::Env env, Napi::Value kind, Napi::Value nth_value,
                      Napi::Value errno_value) {
  const char* const usage =
      "kind must be one of 'open', 'pwritev', 'fdatasync', 'fsync', 'fallocate', 'ftruncate', "
      "'rename', 'unlink', 'pread'";
  if (!kind.IsString()) ThrowType(env, usage);
  const seam::FileOp* op = FindFileOp(kind.As<Napi::String>().Utf8Value());
  if (op == nullptr) ThrowType(env, usage);
  const uint64_t nth = IndexArg(env, nth_value, kMaxSafeInteger, "nth");
  const uint64_t err = IndexArg(env, errno_value, 4095, "errno");
  if (nth > 0 && err == 0) ThrowRange(env, "errno must be an integer from 1 to 4095, got 0");
  seam::SetFileFault(*op, nth, static_cast<int>(err));
}

// Enables the power-loss journal (powerLoss's checks).
void EnablePowerLoss(Napi::Env env, Napi::Value dir_value, Napi::Value sector_value,
                     bool skip_sync) {
  const std::string dir = PathArg(env, dir_value, "journalDir");
  const uint64_t sector = IndexArg(env, sector_value, 4096, "sectorBytes");
  const int rc = powerloss::Enable(dir, static_cast<uint32_t>(sector), skip_sync);
  if (rc < 0) ThrowErrno(env, -rc, "open");
}

// `name` of the environment object `vars` ("" when unset).
std::string Variable(Napi::Env env, Napi::Value vars, const char* name) {
  if (!vars.IsObject()) ThrowType(env, "env must be an object (the worker's process.env)");
  const Napi::Value v = vars.As<Napi::Object>().Get(name);
  if (v.IsUndefined()) return std::string();
  if (!v.IsString()) ThrowType(env, std::string(name) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::string Quoted(Napi::Env env, const std::string& s) {
  const Napi::Object json = env.Global().Get("JSON").As<Napi::Object>();
  return json.Get("stringify").As<Napi::Function>().Call(json, {Napi::String::New(env, s)})
      .As<Napi::String>()
      .Utf8Value();
}

// WALRUS_TEST_FAULT="<write|fsync|map>:<nth>:<errno>[:short]" or "file.<kind>:<nth>:<errno>".
struct FaultSpec {
  std::string text;  // empty: no fault
  bool file = false;
  std::string kind;  // write, fsync, map, or the file operation
  double nth = 0;
  double err = 0;
  bool short_write = false;
};

FaultSpec ParseFault(Napi::Env env, Napi::Value vars) {
  FaultSpec f;
  f.text = Variable(env, vars, "WALRUS_TEST_FAULT");
  if (f.text.empty()) return f;
  static const std::regex kFault(R"(^(write|fsync|map|file\.([a-z]+)):([1-9]\d*):([1-9]\d*)(:short)?$)");
  std::smatch m;
  const bool matched = std::regex_match(f.text, m, kFault);
  f.file = matched && m[2].matched;
  if (!matched || (m[5].matched && m[1].str() != "write") ||
      (f.file && FindFileOp(m[2].str()) == nullptr)) {
    std::string kinds;
    for (const auto& k : kFileOps) kinds += std::string(kinds.empty() ? "" : "|") + k.name;
    ThrowType(env, "WALRUS_TEST_FAULT must be \"<write|fsync|map>:<nth>:<errno>[:short]\" (short "
                   "for write only) or \"file.<" + kinds + ">:<nth>:<errno>\", got " +
                       Quoted(env, f.text));
  }
  f.kind = f.file ? m[2].str() : m[1].str();
  f.nth = std::strtod(m[3].str().c_str(), nullptr);
  f.err = std::strtod(m[4].str().c_str(), nullptr);
  f.short_write = m[5].matched;
  return f;
}

// testSeams.beforeRecovery(env): see the top of this file.
Napi::Value BeforeRecovery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const FaultSpec fault = ParseFault(env, info[0]);
  Napi::Array notes = Napi::Array::New(env);
  const std::string spec = Variable(env, info[0], "WALRUS_TEST_POWERLOSS");
  if (!spec.empty()) {
    static const std::regex kPowerLoss(R"(^(.+):(512|4096)(:nosync)?$)");
    std::smatch m;
    if (!std::regex_match(spec, m, kPowerLoss)) {
      ThrowType(env, "WALRUS_TEST_POWERLOSS must be \"<journal dir>:<512|4096>[:nosync]\", got " +
                         Quoted(env, spec));
    }
    EnablePowerLoss(env, Napi::String::New(env, m[1].str()),
                    Napi::Number::New(env, std::strtod(m[2].str().c_str(), nullptr)), m[3].matched);
    notes.Set(notes.Length(), "power-loss journal in " + m[1].str() + ", " + m[2].str() +
                                  "-byte sectors" + (m[3].matched ? ", fsyncs skipped" : ""));
  }
  if (fault.file) {
    SetFileFaultArgs(env, Napi::String::New(env, fault.kind), Napi::Number::New(env, fault.nth),
                     Napi::Number::New(env, fault.err));
    notes.Set(notes.Length(), "test fault injected: " + fault.text);
  }
  return notes;
}

// testSeams.onContexts(env, contexts): see the top of this file.
Napi::Value OnContexts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const FaultSpec fault = ParseFault(env, info[0]);
  if (!info[1].IsArray()) ThrowType(env, "contexts must be an array of IoContext");
  Napi::Array notes = Napi::Array::New(env);
  if (fault.text.empty() || fault.file) return notes;
  const Napi::Array contexts = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < contexts.Length(); i++) {
    const Napi::Value value = contexts.Get(i);
    if (!value.IsObject()) ThrowType(env, "contexts must be an array of IoContext");
    const Napi::Object context = value.As<Napi::Object>();
    const Napi::Value inject = context.Get("injectFault");
    if (!inject.IsFunction()) ThrowType(env, "contexts must be an array of IoContext");
    inject.As<Napi::Function>().Call(
        context, {Napi::String::New(env, fault.kind), Napi::Number::New(env, fault.nth),
                  Napi::Number::New(env, fault.err), Napi::Boolean::New(env, fault.short_write)});
  }
  notes.Set(notes.Length(), "test fault injected: " + fault.text);
  return notes;
}

// testSeams.powerLoss(journalDir, sectorBytes, skipSync): turns on the power-loss journal for
// the whole process (powerloss.h).
void PowerLoss(const Napi::CallbackInfo& info) {
  EnablePowerLoss(info.Env(), info[0], info[1], info[2].ToBoolean().Value());
}

// testSeams.fileFault(kind, nth, errno): the calling thread's file plan (faults.h).
void FileFaultJs(const Napi::CallbackInfo& info) {
  SetFileFaultArgs(info.Env(), info[0], info[1], info[2]);
}

}  // namespace

void InjectContextFault(const Napi::CallbackInfo& info, seam::ContextFaults* faults) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "kind must be 'write', 'fsync' or 'map'");
  const std::string kind = info[0].As<Napi::String>().Utf8Value();
  if (kind != "write" && kind != "fsync" && kind != "map") {
    ThrowType(env, "kind must be 'write', 'fsync' or 'map'");
  }
  const uint64_t nth = IndexArg(env, info[1], kMaxSafeInteger, "nth");
  const uint64_t err = IndexArg(env, info[2], 4095, "errno");
  if (nth > 0 && err == 0) ThrowRange(env, "errno must be an integer from 1 to 4095, got 0");
  if (!info[3].IsBoolean()) ThrowType(env, "short must be a boolean");
  using Kind = seam::ContextFaults::Kind;
  const Kind plan_kind = kind == "write" ? Kind::kWrite : kind == "fsync" ? Kind::kSync : Kind::kMap;
  seam::SetContextFault(faults, plan_kind, nth, static_cast<int>(err),
                        info[3].As<Napi::Boolean>().Value());
}

void InitTestSeams(Napi::Env env, Napi::Object exports) {
  Napi::Object seams = Napi::Object::New(env);
  seams.Set("beforeRecovery", Napi::Function::New(env, BeforeRecovery, "beforeRecovery"));
  seams.Set("onContexts", Napi::Function::New(env, OnContexts, "onContexts"));
  seams.Set("powerLoss", Napi::Function::New(env, PowerLoss, "powerLoss"));
  seams.Set("fileFault", Napi::Function::New(env, FileFaultJs, "fileFault"));
  seams.Freeze();
  exports.Set("testSeams", seams);
}

}  // namespace walrus
