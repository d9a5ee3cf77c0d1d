// Module initialisation. Node-API loads the addon once per thread (main and every worker);
// Init builds that thread's exports and nothing is shared between threads except the
// immutable CRC tables and the one-time io_uring probe result.
#include <napi.h>

#include "bindings.h"
#include "layout.h"
#include "uring.h"

namespace walrus {
namespace {

Napi::Value UringSupportedJs(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), UringSupported());
}

Napi::Object Layout(Napi::Env env) {
  Napi::Object layout = Napi::Object::New(env);
#define WALRUS_EXPORT_CONSTANT(name) layout.Set(#name, Napi::Number::New(env, WALRUS_##name));
  WALRUS_LAYOUT_CONSTANTS(WALRUS_EXPORT_CONSTANT)
#undef WALRUS_EXPORT_CONSTANT
  layout.Freeze();
  return layout;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitChecksums(env, exports);
  InitFileOps(env, exports);
  InitIoContext(env, exports);
  InitThreadExit(env, exports);
  exports.Set("uringSupported", Napi::Function::New(env, UringSupportedJs, "uringSupported"));
  exports.Set("layout", Layout(env));
#ifdef WALRUS_TEST_SEAMS
  InitTestSeams(env, exports);
#endif
  return exports;
}

}  // namespace walrus

// The macro needs an unqualified name.
static Napi::Object InitWalrus(Napi::Env env, Napi::Object exports) {
  return walrus::Init(env, exports);
}

NODE_API_MODULE(walrus, InitWalrus)
