// CRC32C: a slicing-by-8 table implementation that runs anywhere, and the SSE4.2 (x86-64) or
// ARMv8 CRC instruction when available. Every table is computed at compile time, so there is
// no mutable global state; the only runtime decision (does this CPU have the instruction?) is
// made once in a thread-safe static.
#include "crc32c.h"

#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define WALRUS_CRC32C_X86 1
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
// Only when the compiler targets CPUs that all have the CRC extension (for example
// CXXFLAGS=-march=armv8-a+crc); otherwise arm64 uses the portable code.
#include <arm_acle.h>
#define WALRUS_CRC32C_ARM64 1
#endif

namespace walrus {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // x^32 + ... reflected

struct SlicingTables {
  uint32_t t[8][256];
};

constexpr SlicingTables MakeSlicingTables() {
  SlicingTables tables{};
  for (uint32_t b = 0; b < 256; b++) {
    uint32_t c = b;
    for (int bit = 0; bit < 8; bit++) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    tables.t[0][b] = c;
  }
  // t[k][b] is the register after byte b followed by k zero bytes.
  for (int k = 1; k < 8; k++) {
    for (uint32_t b = 0; b < 256; b++) {
      const uint32_t c = tables.t[k - 1][b];
      tables.t[k][b] = (c >> 8) ^ tables.t[0][c & 0xff];
    }
  }
  return tables;
}

constexpr SlicingTables kSlicing = MakeSlicingTables();

inline uint32_t Load32Le(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

#if defined(WALRUS_CRC32C_X86) || defined(WALRUS_CRC32C_ARM64)

// Polynomials over GF(2) modulo the CRC polynomial, in the reflected bit order of the CRC
// register (bit 31 is x^0). Feeding n zero bytes into a raw (uninverted) register multiplies
// it by x^(8n), which is what joins CRCs of stripes computed in parallel:
// raw(A || B, s) = raw(A, s) * x^(8|B|) + raw(B, 0).
constexpr uint32_t MulModPoly(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t m = 1u << 31; m != 0; m >>= 1) {
    if (a & m) product ^= b;
    b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;
  }
  return product;
}

constexpr uint32_t XPowModPoly(uint64_t exponent) {
  uint32_t result = 1u << 31;  // 1
  uint32_t square = 1u << 30;  // x
  while (exponent != 0) {
    if (exponent & 1) result = MulModPoly(result, square);
    square = MulModPoly(square, square);
    exponent >>= 1;
  }
  return result;
}

// Multiplication by x^(8 * bytes) as four byte-indexed tables (the operator is linear).
struct ShiftTable {
  uint32_t t[4][256];
};

constexpr ShiftTable MakeShiftTable(uint64_t bytes) {
  ShiftTable table{};
  const uint32_t op = XPowModPoly(8 * bytes);
  for (int k = 0; k < 4; k++) {
    for (uint32_t b = 0; b < 256; b++) table.t[k][b] = MulModPoly(op, b << (8 * k));
  }
  return table;
}

inline uint32_t Shift(const ShiftTable& table, uint32_t c) {
  return table.t[0][c & 0xff] ^ table.t[1][(c >> 8) & 0xff] ^ table.t[2][(c >> 16) & 0xff] ^
         table.t[3][c >> 24];
}

// Stripe sizes for the three-way interleave: the instruction has a latency of about three
// cycles and a throughput of one, so three independent streams keep it busy.
// Three sizes, so that records of a few hundred bytes are interleaved too.
constexpr size_t kLongStripe = 8192;
constexpr size_t kShortStripe = 256;
constexpr size_t kTinyStripe = 64;
constexpr ShiftTable kShiftLong = MakeShiftTable(kLongStripe);
constexpr ShiftTable kShiftShort = MakeShiftTable(kShortStripe);
constexpr ShiftTable kShiftTiny = MakeShiftTable(kTinyStripe);

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);  // little-endian hosts only (x86-64, arm64 Linux)
  return v;
}

#endif

#if defined(WALRUS_CRC32C_X86)
#define WALRUS_HW_TARGET __attribute__((target("sse4.2")))
WALRUS_HW_TARGET inline uint32_t HwByte(uint32_t c, uint8_t v) { return _mm_crc32_u8(c, v); }
WALRUS_HW_TARGET inline uint32_t HwWord(uint32_t c, uint64_t v) {
  return static_cast<uint32_t>(_mm_crc32_u64(c, v));
}
#elif defined(WALRUS_CRC32C_ARM64)
#define WALRUS_HW_TARGET
inline uint32_t HwByte(uint32_t c, uint8_t v) { return __crc32cb(c, v); }
inline uint32_t HwWord(uint32_t c, uint64_t v) { return __crc32cd(c, v); }
#endif

#if defined(WALRUS_CRC32C_X86) || defined(WALRUS_CRC32C_ARM64)

template <size_t kStripe>
WALRUS_HW_TARGET inline uint32_t HwThreeWay(const uint8_t*& p, size_t& n, uint32_t c,
                                            const ShiftTable& shift) {
  while (n >= 3 * kStripe) {
    uint32_t c1 = 0;
    uint32_t c2 = 0;
    const uint8_t* const stop = p + kStripe;
    do {
      c = HwWord(c, Load64(p));
      c1 = HwWord(c1, Load64(p + kStripe));
      c2 = HwWord(c2, Load64(p + 2 * kStripe));
      p += 8;
    } while (p != stop);
    c = Shift(shift, c) ^ c1;
    c = Shift(shift, c) ^ c2;
    p += 2 * kStripe;
    n -= 3 * kStripe;
  }
  return c;
}

WALRUS_HW_TARGET uint32_t Crc32cHw(const uint8_t* p, size_t n, uint32_t seed) {
  uint32_t c = ~seed;
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    c = HwByte(c, *p++);
    n--;
  }
  c = HwThreeWay<kLongStripe>(p, n, c, kShiftLong);
  c = HwThreeWay<kShortStripe>(p, n, c, kShiftShort);
  c = HwThreeWay<kTinyStripe>(p, n, c, kShiftTiny);
  while (n >= 8) {
    c = HwWord(c, Load64(p));
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = HwByte(c, *p++);
    n--;
  }
  return ~c;
}

bool DetectHardware() {
#if defined(WALRUS_CRC32C_X86)
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
#else
  return true;  // the compiler was told every target CPU has the extension
#endif
}

#endif

}  // namespace

uint32_t Crc32cPortable(const uint8_t* p, size_t n, uint32_t seed) {
  const auto& t = kSlicing.t;
  uint32_t c = ~seed;
  while (n >= 8) {
    const uint32_t lo = Load32Le(p) ^ c;
    const uint32_t hi = Load32Le(p + 4);
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
        t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = (c >> 8) ^ t[0][(c ^ *p++) & 0xff];
    n--;
  }
  return ~c;
}

bool Crc32cHardware() {
#if defined(WALRUS_CRC32C_X86) || defined(WALRUS_CRC32C_ARM64)
  static const bool hardware = DetectHardware();
  return hardware;
#else
  return false;
#endif
}

uint32_t Crc32c(const uint8_t* data, size_t length, uint32_t seed) {
#if defined(WALRUS_CRC32C_X86) || defined(WALRUS_CRC32C_ARM64)
  if (Crc32cHardware()) return Crc32cHw(data, length, seed);
#endif
  return Crc32cPortable(data, length, seed);
}

}  // namespace walrus
