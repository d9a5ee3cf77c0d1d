// Each file of bindings adds its functions to the module's exports.
#ifndef WALRUS_BINDINGS_H_
#define WALRUS_BINDINGS_H_

#include <napi.h>

namespace walrus {

void InitChecksums(Napi::Env env, Napi::Object exports);  // checksums.cc
void InitFileOps(Napi::Env env, Napi::Object exports);    // fileops.cc
void InitIoContext(Napi::Env env, Napi::Object exports);  // io_context.cc

}  // namespace walrus

#endif  // WALRUS_BINDINGS_H_
