// Errors thrown to JavaScript. System call failures become an Error with `code` (the errno
// name), `errno` (positive number) and `syscall`, like Node's own fs errors; misuse becomes a
// TypeError or RangeError naming the argument. All of them are C++ exceptions
// (Napi::Error), which node-addon-api rethrows into JavaScript at the call boundary. While the
// environment is being torn down (process.exit, worker.terminate) Node-API calls fail and
// nothing can be thrown into JavaScript: NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS (binding.gyp)
// makes the boundary drop such an error instead of rethrowing it as a C++ exception out of a
// C callback, which called std::terminate and aborted the process.
#ifndef WALRUS_ERRORS_H_
#define WALRUS_ERRORS_H_

#include <napi.h>

#include <string>

namespace walrus {

// The errno's symbolic name ("EIO"), or "UNKNOWN".
const char* ErrnoName(int err);

// `err` is a positive errno value.
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const char* syscall);
[[noreturn]] void ThrowRange(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowType(Napi::Env env, const std::string& message);

}  // namespace walrus

#endif  // WALRUS_ERRORS_H_
