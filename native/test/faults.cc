// Fault injection, test build only: the fault hooks of ../seams.h (see faults.h).
#include "faults.h"

#include <vector>

#include "../sysio.h"

namespace walrus {
namespace seam {
namespace {

// The file operations' plan of this thread (one addon instance per thread).
struct FilePlan {
  FileOp op = FileOp::kOpen;
  uint64_t nth = 0;  // 0: no plan
  int err = 0;
  uint64_t seen = 0;
};
thread_local FilePlan t_file_plan;

// The plan of the context whose writeBatch runs on this thread (BatchScope), or null.
thread_local ContextFaults* t_batch = nullptr;

// Counts one operation of `kind` of the running batch; true when it is the one the plan fails.
bool Hits(ContextFaults::Kind kind) {
  ContextFaults* f = t_batch;
  if (f == nullptr || f->nth == 0 || f->kind != kind) return false;
  return ++f->seen == f->nth;
}

}  // namespace

void SetContextFault(ContextFaults* faults, ContextFaults::Kind kind, uint64_t nth, int err,
                     bool short_write) {
  *faults = ContextFaults{};
  if (nth == 0) return;
  faults->kind = kind;
  faults->nth = nth;
  faults->err = err;
  faults->short_write = short_write && kind == ContextFaults::Kind::kWrite;
}

void SetFileFault(FileOp op, uint64_t nth, int err) {
  t_file_plan = FilePlan{};
  if (nth == 0) return;
  t_file_plan.op = op;
  t_file_plan.nth = nth;
  t_file_plan.err = err;
}

int FileFault(FileOp op) {
  FilePlan& p = t_file_plan;
  if (p.nth == 0 || p.op != op) return 0;
  return ++p.seen == p.nth ? -p.err : 0;
}

BatchScope::BatchScope(ContextFaults* faults) : saved_(t_batch) { t_batch = faults; }

BatchScope::~BatchScope() { t_batch = saved_; }

bool InterceptWrite(int fd, const struct iovec* iov, int count, uint64_t position, ssize_t* rc) {
  ContextFaults* f = t_batch;
  if (f != nullptr && f->fail_next_write) {
    f->fail_next_write = false;
    *rc = -f->err;
    return true;
  }
  if (!Hits(ContextFaults::Kind::kWrite)) return false;
  if (!f->short_write) {
    *rc = -f->err;
    return true;
  }
  // Really write the first half of the request, so the file holds a torn write.
  uint64_t total = 0;
  for (int i = 0; i < count; i++) total += iov[i].iov_len;
  uint64_t left = total / 2;
  if (left == 0) {
    *rc = -f->err;
    return true;
  }
  std::vector<struct iovec> half;
  for (int i = 0; i < count && left > 0; i++) {
    const uint64_t take = iov[i].iov_len < left ? iov[i].iov_len : left;
    half.push_back(iovec{iov[i].iov_base, static_cast<size_t>(take)});
    left -= take;
  }
  f->fail_next_write = true;
  *rc = sys_pwritev(fd, half.data(), static_cast<int>(half.size()), position);
  return true;
}

int BatchFault(BatchOp op) {
  const ContextFaults::Kind kind =
      op == BatchOp::kSync ? ContextFaults::Kind::kSync : ContextFaults::Kind::kMap;
  return Hits(kind) ? -t_batch->err : 0;
}

void Completion(bool is_write, uint64_t bytes, int32_t* res) {
  if (!Hits(is_write ? ContextFaults::Kind::kWrite : ContextFaults::Kind::kSync)) return;
  ContextFaults* f = t_batch;
  if (!f->short_write) {
    *res = -f->err;
    return;
  }
  // Reported short: the rest is finished with pwritev, which the plan then fails.
  const int32_t half = static_cast<int32_t>(bytes / 2);
  if (half == 0 || *res < 0) {
    *res = -f->err;
    return;
  }
  if (*res > half) *res = half;
  f->fail_next_write = true;
}

}  // namespace seam
}  // namespace walrus
