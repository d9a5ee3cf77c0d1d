/**
 * process.exit() in the thread that opened the log while producer threads append: the
 * opening thread's 'exit' listener writes its own ring (Watermarks.writeAllSync) but cannot
 * see the producers' rings, and once its listeners return every worker is stopped, records
 * still in a ring with them. So it asks each shard worker (RingSlot.ExitRequest) to write
 * every ring up to its Head as of the request, and waits for ExitDone (or gives up when the
 * worker makes no progress, see ShardClient.waitExitDrain). Entries a producer thread's
 * append returned for before the exit are then in the files, as the opening thread's are.
 */
import { RingSlot } from '../../shared/format/layout.js';
import type { RingSource } from './sources.js';

export class ExitDrain {
  /** The last request served (ExitDone). */
  private served = 0;
  /** The request being served, and what each ring must reach for it; null when none is. */
  private request = 0;
  private targets: Map<RingSource, number> | null = null;

  constructor(private readonly ctl: Int32Array) {}

  /** Whether a request arrived that is not being served yet. */
  arrived(): boolean {
    return this.targets === null && Atomics.load(this.ctl, RingSlot.ExitRequest) !== this.served;
  }

  /** Takes the request: every ring's records published by now are what it waits for. */
  take(sources: readonly RingSource[]): void {
    this.request = Atomics.load(this.ctl, RingSlot.ExitRequest);
    this.targets = new Map(sources.map((s) => [s, s.publishedLogical()]));
  }

  /** After a round of work: reports progress, and the request as served once every target is written. */
  check(sources: readonly RingSource[]): void {
    if (this.targets === null) return;
    let reached = true;
    for (const [src, target] of this.targets) {
      // A ring the worker dropped was drained first (Writer.dropDetached).
      if (src.logicalTail < target && sources.includes(src)) reached = false;
    }
    if (reached) {
      this.served = this.request;
      this.targets = null;
      Atomics.store(this.ctl, RingSlot.ExitDone, this.served);
    }
    Atomics.add(this.ctl, RingSlot.ExitProgress, 1);
    Atomics.notify(this.ctl, RingSlot.ExitProgress);
  }
}
