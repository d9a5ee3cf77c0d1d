// markOnThreadExit / cancelThreadExitMark: a producer thread that ends without
// Producer.close() (worker.terminate(), an uncaught exception, a pool retiring an idle thread)
// runs no JavaScript again, but Node-API runs the environment cleanup hooks of the thread's
// addon instance, on that thread, before its isolate is disposed (the memory of every
// SharedArrayBuffer the thread holds is still alive then). The hook stores `mark` into a word
// of a shared Int32Array if it still holds `token`: the producer's slot in the topic
// directory's ledgers is then known to be abandoned (src/shared/producers/sequencer.ts,
// takeLedger), and a later producer can take it.
#include <napi.h>

#include <cstdint>
#include <string>

#include "args.h"
#include "bindings.h"
#include "errors.h"

namespace walrus {
namespace {

struct ExitMark {
  int32_t* word;
  int32_t token;
  int32_t mark;
};

// What JavaScript holds: the mark while it is armed (the hook owns it; null once cancelled).
struct ExitMarkHandle {
  ExitMark* mark;
};

constexpr napi_type_tag kExitMarkTag = {0x5f1d0c2a7e4b4c61ULL, 0x9a3e58d2b7c40f13ULL};

void OnThreadExit(void* arg) {
  auto* m = static_cast<ExitMark*>(arg);
  int32_t expected = m->token;
  __atomic_compare_exchange_n(m->word, &expected, m->mark, false, __ATOMIC_SEQ_CST,
                              __ATOMIC_SEQ_CST);
  delete m;
}

int32_t Int32Arg(Napi::Env env, const Napi::Value& value, const char* name) {
  if (!value.IsNumber()) ThrowType(env, std::string(name) + " must be a number");
  const double d = value.As<Napi::Number>().DoubleValue();
  if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != static_cast<double>(static_cast<int32_t>(d))) {
    ThrowRange(env, std::string(name) + " must be a 32-bit integer");
  }
  return static_cast<int32_t>(d);
}

// markOnThreadExit(words: Int32Array, index, token, mark): arms the hook; returns its handle.
Napi::Value MarkOnThreadExit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes words = TypedArrayArg(env, info[0], napi_int32_array, "words");
  const uint64_t index = IndexArg(env, info[1], kMaxSafeInteger, "index");
  if (index >= words.length) ThrowRange(env, "index must be inside words");
  const int32_t token = Int32Arg(env, info[2], "token");
  const int32_t mark = Int32Arg(env, info[3], "mark");
  auto* m = new ExitMark{reinterpret_cast<int32_t*>(words.data) + index, token, mark};
  if (napi_add_env_cleanup_hook(env, OnThreadExit, m) != napi_ok) {
    delete m;
    throw Napi::Error::New(env);
  }
  return NewHandle(env, new ExitMarkHandle{m}, kExitMarkTag);
}

// cancelThreadExitMark(handle): disarms the hook (the producer closed); a second call does nothing.
Napi::Value CancelThreadExitMark(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ExitMarkHandle* h = HandleArg<ExitMarkHandle>(env, info[0], kExitMarkTag, "handle must come from markOnThreadExit");
  if (h->mark != nullptr) {
    napi_remove_env_cleanup_hook(env, OnThreadExit, h->mark);
    delete h->mark;
    h->mark = nullptr;
  }
  return env.Undefined();
}

}  // namespace

void InitThreadExit(Napi::Env env, Napi::Object exports) {
  exports.Set("markOnThreadExit", Napi::Function::New(env, MarkOnThreadExit, "markOnThreadExit"));
  exports.Set("cancelThreadExitMark",
              Napi::Function::New(env, CancelThreadExitMark, "cancelThreadExitMark"));
}

}  // namespace walrus
