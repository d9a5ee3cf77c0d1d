// crc32c, sealFrames and verifyFrames. Frame layout comes only from layout.h: a
// RECORD_HEADER_BYTES header whose u32 at REC_LEN is the payload length and whose u32 at
// REC_CRC is the CRC32C of [RECORD_CRC_START, RECORD_HEADER_BYTES + len); frames follow each
// other at their footprint, (header + len) rounded up to RECORD_ALIGN.
#include <string>

#include "args.h"
#include "bindings.h"
#include "crc32c.h"
#include "errors.h"
#include "layout.h"

namespace walrus {
namespace {

constexpr uint64_t kHeaderBytes = WALRUS_RECORD_HEADER_BYTES;
constexpr uint64_t kAlign = WALRUS_RECORD_ALIGN;
static_assert(kAlign > 0 && (kAlign & (kAlign - 1)) == 0, "RECORD_ALIGN is a power of two");
static_assert(WALRUS_REC_LEN + 4 <= WALRUS_RECORD_HEADER_BYTES, "REC_LEN inside the header");
static_assert(WALRUS_REC_CRC + 4 <= WALRUS_RECORD_CRC_START, "the CRC does not cover itself");
static_assert(WALRUS_RECORD_CRC_START <= WALRUS_RECORD_HEADER_BYTES, "CRC starts in the header");

// `buf` may be a view of the ring that another thread is writing. Each field is read exactly
// once (volatile), so the length that passed the bounds check is the length that is used.
inline uint32_t LoadLe32Once(const uint8_t* p) {
  const volatile uint8_t* v = p;
  return static_cast<uint32_t>(v[0]) | static_cast<uint32_t>(v[1]) << 8 |
         static_cast<uint32_t>(v[2]) << 16 | static_cast<uint32_t>(v[3]) << 24;
}

inline void StoreLe32(uint8_t* p, uint32_t value) {
  p[0] = static_cast<uint8_t>(value);
  p[1] = static_cast<uint8_t>(value >> 8);
  p[2] = static_cast<uint8_t>(value >> 16);
  p[3] = static_cast<uint8_t>(value >> 24);
}

inline uint32_t FrameCrc(const uint8_t* frame, uint32_t len) {
  return Crc32c(frame + WALRUS_RECORD_CRC_START,
                kHeaderBytes - WALRUS_RECORD_CRC_START + static_cast<uint64_t>(len), 0);
}

inline uint64_t Footprint(uint32_t len) {
  return (kHeaderBytes + static_cast<uint64_t>(len) + kAlign - 1) & ~(kAlign - 1);
}

uint32_t SeedArg(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined()) return 0;
  uint32_t seed;
  if (napi_get_value_uint32(info.Env(), info[index], &seed) != napi_ok) {
    ThrowType(info.Env(), "seed must be a number");
  }
  return seed;
}

Napi::Value Crc32cJs(const Napi::CallbackInfo& info) {
  const Bytes data = Uint8ArrayArg(info.Env(), info[0], "data");
  return Napi::Number::New(info.Env(), Crc32c(data.data, data.length, SeedArg(info, 1)));
}

Napi::Value Crc32cPortableJs(const Napi::CallbackInfo& info) {
  const Bytes data = Uint8ArrayArg(info.Env(), info[0], "data");
  return Napi::Number::New(info.Env(), Crc32cPortable(data.data, data.length, SeedArg(info, 1)));
}

Napi::Value Crc32cHardwareJs(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Crc32cHardware());
}

void SealFramesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes buf = Uint8ArrayArg(env, info[0], "buf");
  const Bytes positions = TypedArrayArg(env, info[1], napi_uint32_array, "positions");
  const uint64_t count = IndexArg(env, info[2], positions.length, "count");
  const uint32_t* const position = reinterpret_cast<const uint32_t*>(positions.data);
  for (uint64_t i = 0; i < count; i++) {
    const uint64_t at = *static_cast<const volatile uint32_t*>(position + i);  // read once
    if (at > buf.length || buf.length - at < kHeaderBytes) {
      ThrowRange(env, "positions[" + std::to_string(i) + "] = " + std::to_string(at) +
                          " leaves no room for a frame header in buf");
    }
    uint8_t* const frame = buf.data + at;
    const uint32_t len = LoadLe32Once(frame + WALRUS_REC_LEN);
    if (buf.length - at - kHeaderBytes < len) {
      ThrowRange(env, "the frame at positions[" + std::to_string(i) + "] = " +
                          std::to_string(at) + " has length " + std::to_string(len) +
                          ", past the end of buf");
    }
    StoreLe32(frame + WALRUS_REC_CRC, FrameCrc(frame, len));
  }
}

Napi::Value VerifyFramesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Bytes buf = Uint8ArrayArg(env, info[0], "buf");
  const uint64_t end = IndexArg(env, info[2], buf.length, "end");
  uint64_t at = IndexArg(env, info[1], end, "start");
  // Invariant: at <= end <= buf.length, so every read below stays inside buf.
  while (end - at >= kHeaderBytes) {
    const uint8_t* const frame = buf.data + at;
    const uint32_t len = LoadLe32Once(frame + WALRUS_REC_LEN);
    const uint64_t footprint = Footprint(len);
    if (footprint > end - at) break;
    if (LoadLe32Once(frame + WALRUS_REC_CRC) != FrameCrc(frame, len)) break;
    at += footprint;
  }
  return Napi::Number::New(env, static_cast<double>(at));
}

}  // namespace

void InitChecksums(Napi::Env env, Napi::Object exports) {
  exports.Set("crc32c", Napi::Function::New(env, Crc32cJs, "crc32c"));
  exports.Set("crc32cHardware", Napi::Function::New(env, Crc32cHardwareJs, "crc32cHardware"));
  exports.Set("sealFrames", Napi::Function::New(env, SealFramesJs, "sealFrames"));
  exports.Set("verifyFrames", Napi::Function::New(env, VerifyFramesJs, "verifyFrames"));
  // Not part of NativeBinding: lets tests check the portable code on machines with the
  // instruction.
  exports.Set("_crc32cPortable", Napi::Function::New(env, Crc32cPortableJs, "_crc32cPortable"));
}

}  // namespace walrus
