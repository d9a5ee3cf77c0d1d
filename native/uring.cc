#include "uring.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "sysio.h"

// Flags newer than the kernel headers this may be built against; values are kernel ABI.
#ifndef IORING_SETUP_CLAMP
#define IORING_SETUP_CLAMP (1U << 4)
#endif
#ifndef IORING_SETUP_SUBMIT_ALL
#define IORING_SETUP_SUBMIT_ALL (1U << 7)
#endif
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

namespace walrus {
namespace {

// Tried in order, moving on only when the kernel rejects the flags (EINVAL): SUBMIT_ALL keeps
// submitting after an entry that fails early (so a batch is never left half in the queue);
// the task-run flags save interrupts and context switches on kernels that have them. Every
// ring is used only by the thread that created it, as SINGLE_ISSUER requires.
constexpr unsigned kSetupFlags[] = {
    IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
        IORING_SETUP_DEFER_TASKRUN,
    IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
    IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL,
    IORING_SETUP_CLAMP,
    0,
};

bool OpSupported(const struct io_uring_probe* probe, unsigned op) {
  return op <= probe->last_op && (probe->ops[op].flags & IO_URING_OP_SUPPORTED) != 0;
}

// A ring that can be created, mapped, tells it supports the two operations writeBatch uses,
// and completes a NOP: anything less (ENOSYS, a seccomp EPERM, io_uring_disabled, a kernel
// without IORING_REGISTER_PROBE) means the pwritev path.
bool Probe() {
  Ring ring;
  if (ring.Init(4) < 0) return false;
  constexpr unsigned kProbeOps = 256;
  std::vector<uint64_t> storage(
      (sizeof(struct io_uring_probe) + kProbeOps * sizeof(struct io_uring_probe_op)) / 8 + 1, 0);
  auto* probe = reinterpret_cast<struct io_uring_probe*>(storage.data());
  if (ring.Register(IORING_REGISTER_PROBE, probe, kProbeOps) < 0) return false;
  if (!OpSupported(probe, IORING_OP_WRITEV) || !OpSupported(probe, IORING_OP_FSYNC)) return false;
  struct io_uring_sqe* sqe = ring.NextSqe();
  sqe->opcode = IORING_OP_NOP;
  sqe->user_data = 42;
  int rc;
  do rc = ring.Enter(1, 1, IORING_ENTER_GETEVENTS); while (rc == -EINTR);
  if (rc != 1) return false;
  uint64_t user_data = 0;
  int32_t res = -1;
  for (int spins = 0; !ring.PopCqe(&user_data, &res); spins++) {
    if (spins > 1000) return false;
    do rc = ring.Enter(0, 1, IORING_ENTER_GETEVENTS); while (rc == -EINTR);
    if (rc < 0) return false;
  }
  return user_data == 42 && res == 0;
}

}  // namespace

bool UringSupported() {
  static const bool supported = Probe();  // initialised once, thread-safely
  return supported;
}

int Ring::Init(unsigned entries) {
  Close();
  struct io_uring_params params;
  int fd = -EINVAL;
  for (unsigned flags : kSetupFlags) {
    std::memset(&params, 0, sizeof params);
    params.flags = flags;
    fd = sys_uring_setup(entries, &params);
    if (fd != -EINVAL) break;
  }
  if (fd < 0) return fd;
  fd_ = fd;

  sq_ring_bytes_ = params.sq_off.array + params.sq_entries * sizeof(unsigned);
  cq_ring_bytes_ = params.cq_off.cqes + params.cq_entries * sizeof(struct io_uring_cqe);
  const bool single_mmap = (params.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single_mmap && cq_ring_bytes_ > sq_ring_bytes_) sq_ring_bytes_ = cq_ring_bytes_;
  void* sq = mmap(nullptr, sq_ring_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                  fd_, IORING_OFF_SQ_RING);
  if (sq == MAP_FAILED) {
    const int err = errno;
    Close();
    return -err;
  }
  sq_ring_ = sq;
  if (single_mmap) {
    cq_ring_ = sq_ring_;
    cq_ring_bytes_ = 0;
  } else {
    void* cq = mmap(nullptr, cq_ring_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                    fd_, IORING_OFF_CQ_RING);
    if (cq == MAP_FAILED) {
      const int err = errno;
      Close();
      return -err;
    }
    cq_ring_ = cq;
  }
  sqes_bytes_ = params.sq_entries * sizeof(struct io_uring_sqe);
  void* sqes = mmap(nullptr, sqes_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                    IORING_OFF_SQES);
  if (sqes == MAP_FAILED) {
    const int err = errno;
    Close();
    return -err;
  }
  sqes_ = static_cast<struct io_uring_sqe*>(sqes);

  auto* sq_base = static_cast<uint8_t*>(sq_ring_);
  sq_entries_ = params.sq_entries;
  sq_mask_ = *reinterpret_cast<unsigned*>(sq_base + params.sq_off.ring_mask);
  sq_khead_ = reinterpret_cast<unsigned*>(sq_base + params.sq_off.head);
  sq_ktail_ = reinterpret_cast<unsigned*>(sq_base + params.sq_off.tail);
  sq_tail_ = *sq_ktail_;
  // Slot i of the index array always names entry i; entries are used in ring order.
  auto* array = reinterpret_cast<unsigned*>(sq_base + params.sq_off.array);
  for (unsigned i = 0; i < sq_entries_; i++) array[i] = i;

  auto* cq_base = static_cast<uint8_t*>(cq_ring_);
  cq_mask_ = *reinterpret_cast<unsigned*>(cq_base + params.cq_off.ring_mask);
  cq_khead_ = reinterpret_cast<unsigned*>(cq_base + params.cq_off.head);
  cq_ktail_ = reinterpret_cast<unsigned*>(cq_base + params.cq_off.tail);
  cqes_ = reinterpret_cast<struct io_uring_cqe*>(cq_base + params.cq_off.cqes);
  return 0;
}

void Ring::Close() {
  if (sqes_ != nullptr) munmap(sqes_, sqes_bytes_);
  if (cq_ring_ != nullptr && cq_ring_ != sq_ring_) munmap(cq_ring_, cq_ring_bytes_);
  if (sq_ring_ != nullptr) munmap(sq_ring_, sq_ring_bytes_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  sq_ring_ = cq_ring_ = nullptr;
  sqes_ = nullptr;
  sq_ring_bytes_ = cq_ring_bytes_ = sqes_bytes_ = 0;
  sq_entries_ = sq_mask_ = sq_tail_ = cq_mask_ = 0;
  sq_khead_ = sq_ktail_ = cq_khead_ = cq_ktail_ = nullptr;
  cqes_ = nullptr;
}

struct io_uring_sqe* Ring::NextSqe() {
  const unsigned head = __atomic_load_n(sq_khead_, __ATOMIC_ACQUIRE);
  if (sq_tail_ - head >= sq_entries_) return nullptr;
  struct io_uring_sqe* sqe = &sqes_[sq_tail_ & sq_mask_];
  std::memset(sqe, 0, sizeof *sqe);
  sq_tail_++;
  return sqe;
}

unsigned Ring::Unsubmitted() const {
  return sq_tail_ - __atomic_load_n(sq_khead_, __ATOMIC_ACQUIRE);
}

int Ring::Enter(unsigned to_submit, unsigned min_complete, unsigned flags) {
  // Release: the kernel must see the entries' contents before the tail that publishes them.
  __atomic_store_n(sq_ktail_, sq_tail_, __ATOMIC_RELEASE);
  return sys_uring_enter(fd_, to_submit, min_complete, flags);
}

int Ring::Register(unsigned opcode, void* arg, unsigned count) {
  return sys_uring_register(fd_, opcode, arg, count);
}

void Ring::DiscardUnsubmitted() {
  // Without SQPOLL the kernel reads the tail only inside io_uring_enter, so moving it back to
  // the head withdraws entries it has not consumed.
  sq_tail_ = __atomic_load_n(sq_khead_, __ATOMIC_ACQUIRE);
  __atomic_store_n(sq_ktail_, sq_tail_, __ATOMIC_RELEASE);
}

bool Ring::PopCqe(uint64_t* user_data, int32_t* res) {
  const unsigned head = *cq_khead_;  // only this thread moves the head
  // Acquire: the entry's contents are visible once the tail that covers it is.
  if (head == __atomic_load_n(cq_ktail_, __ATOMIC_ACQUIRE)) return false;
  const struct io_uring_cqe* cqe = &cqes_[head & cq_mask_];
  *user_data = cqe->user_data;
  *res = cqe->res;
  // Release: the kernel may reuse the slot only after it has been read.
  __atomic_store_n(cq_khead_, head + 1, __ATOMIC_RELEASE);
  return true;
}

}  // namespace walrus
