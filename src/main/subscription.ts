/**
 * Live tail: waiting for a topic's next append without polling. Appends happen only in this
 * instance (the directory lock guarantees one writer), so the main thread knows the moment a
 * topic grows and wakes its subscribers directly.
 */

/** A topic's wake-up list, shared by its subscribers. */
export interface Watchable {
  next: number;
  /** Resolvers of subscribers waiting for `next` to grow; null when nobody waits. */
  watchers: (() => void)[] | null;
}

/** Called after every successful append to `t`. */
export function notifyAppend(t: Watchable): void {
  const w = t.watchers;
  if (w === null) return;
  t.watchers = null;
  for (const wake of w) wake();
}

export function abortError(signal: AbortSignal): unknown {
  return signal.reason instanceof Error ? signal.reason : new DOMException('The operation was aborted', 'AbortError');
}

/**
 * The instance's close as the waits of subscribers see it. A wait registers a callback for
 * as long as it waits and removes it when it ends. (Racing a wait against a promise that
 * settles at close, with `closed.then(...)`, left one reaction per wait attached to that
 * promise until the close: 1.3 KB retained per wait, measured with a subscriber waiting for
 * each entry; a consumer of 100 entries a second would have held gigabytes within a day.)
 */
export class CloseSignal {
  /** Set once the instance started closing. */
  closed = false;
  private callbacks: (() => void)[] = [];

  /**
   * Calls `fn` once the instance closes (in a microtask if it has: never before `on` returns,
   * so a caller may use what `on` returned in `fn`); returns what unregisters it.
   */
  on(fn: () => void): () => void {
    if (this.closed) {
      queueMicrotask(fn);
      return () => {};
    }
    this.callbacks.push(fn);
    return () => {
      const k = this.callbacks.lastIndexOf(fn);
      if (k < 0) return;
      // Order does not matter: swap with the last, pop.
      this.callbacks[k] = this.callbacks[this.callbacks.length - 1]!;
      this.callbacks.pop();
    };
  }

  fire(): void {
    if (this.closed) return;
    this.closed = true;
    const fns = this.callbacks;
    this.callbacks = [];
    for (const fn of fns) fn();
  }
}

/** Longest delay a timer takes (ms); the keep-alive timer never needs to fire. */
const KEEP_ALIVE_MS = 2 ** 31 - 1;

/**
 * Resolves when `t.next` exceeds `seen`, or when `closed` fires; rejects with an AbortError
 * when `signal` aborts. While it waits it holds a ref'd timer, so a subscriber
 * waiting for entries keeps the process alive as an open socket does (a top-level
 * `for await` over `subscribe()` otherwise ended the process, exit code 13, once caught up);
 * the timer goes as soon as the wait ends, so an open log with nobody waiting does not.
 */
export function waitForAppend(t: Watchable, seen: number, closed: CloseSignal, signal: AbortSignal | undefined): Promise<void> {
  if (t.next > seen || closed.closed) return Promise.resolve();
  if (signal?.aborted) return Promise.reject(abortError(signal));
  return new Promise<void>((resolve, reject) => {
    const keepAlive = setInterval(() => {}, KEEP_ALIVE_MS);
    let done = false;
    const end = (): void => {
      done = true;
      clearInterval(keepAlive);
      signal?.removeEventListener('abort', onAbort);
      offClose();
    };
    const onAbort = (): void => {
      if (done) return;
      end();
      if (t.watchers) t.watchers = t.watchers.filter((w) => w !== wake);
      reject(abortError(signal!));
    };
    // Called by an append (which empties the topic's list) or by the close.
    const wake = (): void => {
      if (done) return;
      end();
      if (closed.closed && t.watchers) t.watchers = t.watchers.filter((w) => w !== wake);
      resolve();
    };
    (t.watchers ??= []).push(wake);
    signal?.addEventListener('abort', onAbort, { once: true });
    const offClose = closed.on(wake);
  });
}
