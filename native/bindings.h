// Each file of bindings adds its functions to the module's exports.
#ifndef WALRUS_BINDINGS_H_
#define WALRUS_BINDINGS_H_

#include <napi.h>

namespace walrus {

void InitChecksums(Napi::Env env, Napi::Object exports);  // checksums.cc
void InitFileOps(Napi::Env env, Napi::Object exports);    // fileops.cc
void InitIoContext(Napi::Env env, Napi::Object exports);  // io_context.cc
void InitThreadExit(Napi::Env env, Napi::Object exports);  // thread_exit.cc

#ifdef WALRUS_TEST_SEAMS
// Test build only (native/test/seams.cc): the `testSeams` export, and the arguments of
// IoContext.injectFault applied to a context's fault plan.
namespace seam {
struct ContextFaults;
}
void InitTestSeams(Napi::Env env, Napi::Object exports);
void InjectContextFault(const Napi::CallbackInfo& info, seam::ContextFaults* faults);
#endif

}  // namespace walrus

#endif  // WALRUS_BINDINGS_H_
