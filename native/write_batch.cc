#include "write_batch.h"

#include <algorithm>
#include <cerrno>
#include <climits>

#include "seams.h"
#include "sysio.h"

namespace walrus {
namespace {

using Chain = UringScratch::Chain;
using Slot = UringScratch::Slot;

constexpr int32_t kNoResult = INT32_MIN;
constexpr uint64_t kNothingToRedo = UINT64_MAX;
// io_uring_enter may keep answering EAGAIN/EBUSY with nothing of ours in flight only for a
// short while (a transient shortage); past this many attempts the batch fails.
constexpr int kMaxIdleRetries = 10000;

// Completions that say "this did not run, or stopped early, through no fault of the file":
// the linked predecessor broke the chain, or the request was interrupted.
bool NeedsRedo(int32_t res) { return res == -ECANCELED || res == -EAGAIN || res == -EINTR; }

bool Contains(const std::vector<int>& sorted, int fd) {
  return std::binary_search(sorted.begin(), sorted.end(), fd);
}

// One chain per fd: its pieces in the caller's order, ending in a fdatasync when the fd is
// in sync_fds; sync fds without writes get a chain of just the fdatasync.
void BuildChains(const WriteBatch& batch, UringScratch& s) {
  const size_t count = batch.pieces.size();
  s.order.resize(count);
  for (size_t i = 0; i < count; i++) s.order[i] = static_cast<uint32_t>(i);
  std::sort(s.order.begin(), s.order.end(), [&](uint32_t a, uint32_t b) {
    const int fa = batch.pieces[a].fd;
    const int fb = batch.pieces[b].fd;
    return fa != fb ? fa < fb : a < b;
  });
  s.chains.clear();
  for (size_t begin = 0; begin < count;) {
    const int fd = batch.pieces[s.order[begin]].fd;
    size_t end = begin + 1;
    while (end < count && batch.pieces[s.order[end]].fd == fd) end++;
    s.chains.push_back(Chain{fd, begin, end, Contains(batch.sync_fds, fd)});
    begin = end;
  }
  const size_t with_writes = s.chains.size();
  for (int fd : batch.sync_fds) {
    const auto written = std::lower_bound(
        s.chains.begin(), s.chains.begin() + static_cast<ptrdiff_t>(with_writes), fd,
        [](const Chain& chain, int value) { return chain.fd < value; });
    if (written == s.chains.begin() + static_cast<ptrdiff_t>(with_writes) || written->fd != fd) {
      s.chains.push_back(Chain{fd, 0, 0, true});
    }
  }
}

// Submits the round's entries and waits until every submitted one has completed, so nothing
// the kernel reads (iovec arrays, buffers) is released while in flight. Returns 0, or -errno
// of io_uring_enter; after such a failure the ring is closed if requests could not be
// reaped, because their completions would otherwise be mistaken for a later round's. Each
// completion passes through the fault plan (test build only) as it is reaped.
int SubmitAndReap(Ring& ring, unsigned count, const WriteBatch& batch, UringScratch& s) {
  s.results.assign(count, kNoResult);
  unsigned submitted = 0;
  unsigned reaped = 0;
  int idle_retries = 0;
  int fatal = 0;
  while (reaped < submitted || (fatal == 0 && submitted < count)) {
    const unsigned to_submit = fatal == 0 ? count - submitted : 0;
    const unsigned in_flight = submitted - reaped;
    const int rc = ring.Enter(to_submit, in_flight + to_submit, IORING_ENTER_GETEVENTS);
    if (rc > 0) {
      submitted += static_cast<unsigned>(rc);
    } else if (rc == -EAGAIN || rc == -EBUSY || (rc == 0 && to_submit > 0)) {
      // Completions must be reaped (below) before the kernel takes more.
      if (in_flight == 0 && ++idle_retries > kMaxIdleRetries) {
        fatal = rc == 0 ? EAGAIN : -rc;
        ring.DiscardUnsubmitted();
      }
    } else if (rc < 0 && rc != -EINTR) {
      if (fatal != 0) {
        // Cannot even wait for what is in flight: give the requests to the kernel's teardown.
        ring.Close();
        return -fatal;
      }
      fatal = -rc;
      ring.DiscardUnsubmitted();
    }
    uint64_t user_data;
    int32_t res;
    while (ring.PopCqe(&user_data, &res)) {
      if (user_data < count && s.results[user_data] == kNoResult) {
        const Slot& slot = s.slots[user_data];
        seam::Completion(slot.is_write, slot.is_write ? batch.pieces[slot.piece].bytes : 0, &res);
        s.results[user_data] = res;
        reaped++;
      }
    }
  }
  return -fatal;
}

// Interprets a completed round: the first error (in submission order) fails the batch;
// writes that were short, cancelled by a broken link or interrupted are finished with
// pwritev, and their fds fdatasync'd again, because a fdatasync in the same chain either was
// cancelled or may have run before the rest of the data was written.
bool FinishRound(WriteBatch& batch, UringScratch& s, IoFailure* failure) {
  const size_t count = s.slots.size();
  s.redo.assign(count, kNothingToRedo);
  s.resync.clear();
  for (size_t i = 0; i < count; i++) {
    const Slot& slot = s.slots[i];
    const int32_t res = s.results[i];
    if (slot.is_write) {
      const WritePiece& piece = batch.pieces[slot.piece];
      if (res >= 0 && static_cast<uint64_t>(res) >= piece.bytes) continue;
      if (res >= 0) {
        s.redo[i] = static_cast<uint64_t>(res);
      } else if (NeedsRedo(res)) {
        s.redo[i] = 0;
      } else if (failure->err == 0) {
        *failure = IoFailure{-res, "writev"};
      }
    } else if (res != 0) {
      if (NeedsRedo(res)) {
        s.resync.push_back(slot.fd);
      } else if (failure->err == 0) {
        *failure = IoFailure{-res, "fdatasync"};
      }
    }
  }
  if (failure->err != 0) return false;
  for (size_t i = 0; i < count; i++) {
    if (s.redo[i] == kNothingToRedo) continue;
    const WritePiece& piece = batch.pieces[s.slots[i].piece];
    struct iovec* iov = &batch.iov[piece.first_iov];
    SkipBytes(iov, piece.iov_count, s.redo[i]);
    uint64_t written = 0;
    const int rc = WriteAll(piece.fd, iov, piece.iov_count, piece.position + s.redo[i], &written);
    if (rc < 0) {
      *failure = IoFailure{-rc, "pwritev"};
      return false;
    }
    if (Contains(batch.sync_fds, piece.fd)) s.resync.push_back(piece.fd);
  }
  std::sort(s.resync.begin(), s.resync.end());
  s.resync.erase(std::unique(s.resync.begin(), s.resync.end()), s.resync.end());
  for (int fd : s.resync) {
    const int rc = DataSync(fd);
    if (rc < 0) {
      *failure = IoFailure{-rc, "fdatasync"};
      return false;
    }
  }
  return true;
}

}  // namespace

bool RunPwritev(WriteBatch& batch, IoFailure* failure) {
  for (const WritePiece& piece : batch.pieces) {
    uint64_t written = 0;
    const int rc = WriteAll(piece.fd, &batch.iov[piece.first_iov], piece.iov_count,
                            piece.position, &written);
    if (rc < 0) {
      *failure = IoFailure{-rc, "pwritev"};
      return false;
    }
  }
  for (int fd : batch.sync_fds) {
    const int rc = DataSync(fd);
    if (rc < 0) {
      *failure = IoFailure{-rc, "fdatasync"};
      return false;
    }
  }
  return true;
}

// Fills rounds of at most the queue's capacity. A chain is linked (IOSQE_IO_LINK) so that its
// fdatasync starts only after all of that fd's writes succeeded in full; a chain that does
// not fit is cut, and its rest continues in the next round, which starts only after this one
// has completed, preserving the order. Chains of different fds run concurrently.
bool RunUring(Ring& ring, WriteBatch& batch, UringScratch& s, IoFailure* failure) {
  if (!ring.IsOpen()) {
    *failure = IoFailure{EBADF, "io_uring_enter"};
    return false;
  }
  BuildChains(batch, s);
  const size_t capacity = ring.Capacity();
  size_t c = 0;
  size_t next = s.chains.empty() ? 0 : s.chains[0].begin;
  while (c < s.chains.size()) {
    ring.DiscardUnsubmitted();  // nothing is left over from an earlier failure
    s.slots.clear();
    while (c < s.chains.size() && s.slots.size() < capacity) {
      const Chain& chain = s.chains[c];
      struct io_uring_sqe* last = nullptr;
      while (next < chain.end && s.slots.size() < capacity) {
        const uint32_t index = s.order[next++];
        const WritePiece& piece = batch.pieces[index];
        // Test build only: the power-loss journal takes the pre-images before the kernel sees
        // the write (a no-op unless enabled).
        seam::BeforeWrite(piece.fd, piece.position, piece.bytes);
        last = ring.NextSqe();
        last->opcode = IORING_OP_WRITEV;
        last->flags = IOSQE_IO_LINK;
        last->fd = piece.fd;
        last->off = piece.position;
        last->addr = reinterpret_cast<uint64_t>(&batch.iov[piece.first_iov]);
        last->len = static_cast<uint32_t>(piece.iov_count);
        last->user_data = s.slots.size();
        s.slots.push_back(Slot{true, index, piece.fd});
      }
      bool done = next == chain.end && !chain.sync;
      if (next == chain.end && chain.sync && s.slots.size() < capacity) {
        last = ring.NextSqe();
        // The power-loss negative control (test build only) skips every sync: a NOP
        // completes 0.
        last->opcode = seam::SkipSync() ? IORING_OP_NOP : IORING_OP_FSYNC;
        last->fd = chain.fd;
        last->fsync_flags = IORING_FSYNC_DATASYNC;
        last->user_data = s.slots.size();
        s.slots.push_back(Slot{false, 0, chain.fd});
        done = true;
      }
      // A chain ends with its last entry of the round; a link must not run into the next fd.
      if (last != nullptr) last->flags &= static_cast<uint8_t>(~IOSQE_IO_LINK);
      if (!done) break;
      if (++c < s.chains.size()) next = s.chains[c].begin;
    }
    const int rc = SubmitAndReap(ring, static_cast<unsigned>(s.slots.size()), batch, s);
    if (rc < 0) {
      *failure = IoFailure{-rc, "io_uring_enter"};
      return false;
    }
    // A file is durable (for the power-loss journal, test build only) once its FSYNC
    // completed with 0: its linked writes had then all completed in full.
    if (seam::kEnabled && !seam::SkipSync()) {
      for (size_t i = 0; i < s.slots.size(); i++) {
        if (!s.slots[i].is_write && s.results[i] == 0) seam::Synced(s.slots[i].fd);
      }
    }
    if (!FinishRound(batch, s, failure)) return false;
  }
  return true;
}

}  // namespace walrus
