#include "errors.h"

#include <cerrno>
#include <cstring>

namespace walrus {
namespace {

struct ErrnoEntry {
  int value;
  const char* name;
};

// The errors file and io_uring system calls can return. Aliases (EWOULDBLOCK, ENOTSUP,
// EDEADLOCK) share values with the first name listed, which wins, as in libuv.
#define WALRUS_ERRNO(name) {name, #name},
constexpr ErrnoEntry kErrnoNames[] = {
    WALRUS_ERRNO(EPERM) WALRUS_ERRNO(ENOENT) WALRUS_ERRNO(ESRCH) WALRUS_ERRNO(EINTR)
    WALRUS_ERRNO(EIO) WALRUS_ERRNO(ENXIO) WALRUS_ERRNO(E2BIG) WALRUS_ERRNO(ENOEXEC)
    WALRUS_ERRNO(EBADF) WALRUS_ERRNO(ECHILD) WALRUS_ERRNO(EAGAIN) WALRUS_ERRNO(ENOMEM)
    WALRUS_ERRNO(EACCES) WALRUS_ERRNO(EFAULT) WALRUS_ERRNO(EBUSY) WALRUS_ERRNO(EEXIST)
    WALRUS_ERRNO(EXDEV) WALRUS_ERRNO(ENODEV) WALRUS_ERRNO(ENOTDIR) WALRUS_ERRNO(EISDIR)
    WALRUS_ERRNO(EINVAL) WALRUS_ERRNO(ENFILE) WALRUS_ERRNO(EMFILE) WALRUS_ERRNO(ENOTTY)
    WALRUS_ERRNO(ETXTBSY) WALRUS_ERRNO(EFBIG) WALRUS_ERRNO(ENOSPC) WALRUS_ERRNO(ESPIPE)
    WALRUS_ERRNO(EROFS) WALRUS_ERRNO(EMLINK) WALRUS_ERRNO(EPIPE) WALRUS_ERRNO(EDOM)
    WALRUS_ERRNO(ERANGE) WALRUS_ERRNO(EDEADLK) WALRUS_ERRNO(ENAMETOOLONG)
    WALRUS_ERRNO(ENOLCK) WALRUS_ERRNO(ENOSYS) WALRUS_ERRNO(ENOTEMPTY) WALRUS_ERRNO(ELOOP)
    WALRUS_ERRNO(ENODATA) WALRUS_ERRNO(ETIME) WALRUS_ERRNO(EOVERFLOW)
    WALRUS_ERRNO(EOPNOTSUPP) WALRUS_ERRNO(ENOTSUP) WALRUS_ERRNO(EWOULDBLOCK)
    WALRUS_ERRNO(ETIMEDOUT) WALRUS_ERRNO(ESTALE) WALRUS_ERRNO(EDQUOT)
    WALRUS_ERRNO(ECANCELED) WALRUS_ERRNO(EOWNERDEAD) WALRUS_ERRNO(ENOTRECOVERABLE)
    WALRUS_ERRNO(ENOTSOCK) WALRUS_ERRNO(EUCLEAN) WALRUS_ERRNO(ENOMEDIUM)
    WALRUS_ERRNO(EREMOTEIO) WALRUS_ERRNO(ENOTBLK) WALRUS_ERRNO(ENOBUFS)
    WALRUS_ERRNO(ENOKEY) WALRUS_ERRNO(EKEYEXPIRED)
};
#undef WALRUS_ERRNO

// strerror_r has a GNU signature (returns the message) and an XSI one (fills the buffer);
// overloads pick the right reading for whichever the C library declares.
[[maybe_unused]] const char* StrerrorResult(const char* message, const char*) {
  return message;
}
[[maybe_unused]] const char* StrerrorResult(int status, const char* buffer) {
  return status == 0 ? buffer : "unknown error";
}

std::string Describe(int err) {
  char buffer[128] = {0};
  std::string text = StrerrorResult(strerror_r(err, buffer, sizeof buffer), buffer);
  // Node writes "EIO: i/o error, write": lower-case the first letter unless it starts an
  // acronym.
  const bool acronym = text.size() > 1 && text[1] >= 'A' && text[1] <= 'Z';
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z' && !acronym) {
    text[0] = static_cast<char>(text[0] - 'A' + 'a');
  }
  return text;
}

}  // namespace

const char* ErrnoName(int err) {
  for (const ErrnoEntry& entry : kErrnoNames) {
    if (entry.value == err) return entry.name;
  }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char* name = strerrorname_np(err);
  if (name != nullptr) return name;
#endif
  return "UNKNOWN";
}

void ThrowErrno(Napi::Env env, int err, const char* syscall) {
  const char* code = ErrnoName(err);
  Napi::Error error =
      Napi::Error::New(env, std::string(code) + ": " + Describe(err) + ", " + syscall);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  throw error;
}

void ThrowRange(Napi::Env env, const std::string& message) {
  throw Napi::RangeError::New(env, message);
}

void ThrowType(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

}  // namespace walrus
