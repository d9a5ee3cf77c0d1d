// A minimal io_uring: the kernel interface of <linux/io_uring.h>, the raw system calls and the
// mmap'd submission and completion rings. One Ring is used by one thread.
#ifndef WALRUS_URING_H_
#define WALRUS_URING_H_

#include <linux/io_uring.h>

#include <cstddef>
#include <cstdint>

namespace walrus {

// Whether io_uring_setup works in this process and the kernel supports IORING_OP_WRITEV and
// IORING_OP_FSYNC. Probed once per process; later calls return the stored answer.
bool UringSupported();

class Ring {
 public:
  Ring() = default;
  ~Ring() { Close(); }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // Creates the ring with at least `entries` submission slots. Returns 0 or -errno (the
  // error of io_uring_setup, or of mmap).
  int Init(unsigned entries);
  // Unmaps the rings and closes the ring descriptor. Idempotent.
  void Close();
  bool IsOpen() const { return fd_ >= 0; }

  unsigned Capacity() const { return sq_entries_; }
  // The next free submission entry, zeroed; nullptr when the queue is full. Entries become
  // visible to the kernel only at Enter.
  struct io_uring_sqe* NextSqe();
  // Entries prepared and not yet consumed by the kernel.
  unsigned Unsubmitted() const;
  // Publishes prepared entries and calls io_uring_enter. Returns what io_uring_enter returns:
  // the number of entries consumed, or -errno.
  int Enter(unsigned to_submit, unsigned min_complete, unsigned flags);
  // Takes back prepared entries the kernel has not consumed (after a failed Enter), so that
  // they are not submitted later by accident.
  void DiscardUnsubmitted();
  // io_uring_register; returns its result or -errno.
  int Register(unsigned opcode, void* arg, unsigned count);
  // Pops one completion if there is one.
  bool PopCqe(uint64_t* user_data, int32_t* res);

 private:
  int fd_ = -1;
  void* sq_ring_ = nullptr;
  size_t sq_ring_bytes_ = 0;
  void* cq_ring_ = nullptr;  // == sq_ring_ with IORING_FEAT_SINGLE_MMAP
  size_t cq_ring_bytes_ = 0;
  struct io_uring_sqe* sqes_ = nullptr;
  size_t sqes_bytes_ = 0;

  unsigned sq_entries_ = 0;
  unsigned sq_mask_ = 0;
  unsigned* sq_khead_ = nullptr;
  unsigned* sq_ktail_ = nullptr;
  unsigned sq_tail_ = 0;  // local tail: entries prepared, published by Enter

  unsigned cq_mask_ = 0;
  unsigned* cq_khead_ = nullptr;
  unsigned* cq_ktail_ = nullptr;
  struct io_uring_cqe* cqes_ = nullptr;
};

}  // namespace walrus

#endif  // WALRUS_URING_H_
