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

/** Longest delay a timer takes (ms); the keep-alive timer never needs to fire. */
const KEEP_ALIVE_MS = 2 ** 31 - 1;

/**
 * Resolves when `t.next` exceeds `seen`, or when `closed()` is resolved; rejects with an
 * AbortError when `signal` aborts. While it waits it holds a ref'd timer, so a subscriber
 * waiting for entries keeps the process alive as an open socket does (a top-level
 * `for await` over `subscribe()` otherwise ended the process, exit code 13, once caught up);
 * the timer goes as soon as the wait ends, so an open log with nobody waiting does not.
 */
export function waitForAppend(t: Watchable, seen: number, closed: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (t.next > seen) return Promise.resolve();
  if (signal?.aborted) return Promise.reject(abortError(signal));
  return new Promise<void>((resolve, reject) => {
    const keepAlive = setInterval(() => {}, KEEP_ALIVE_MS);
    const onAbort = (): void => {
      clearInterval(keepAlive);
      if (t.watchers) t.watchers = t.watchers.filter((w) => w !== wake);
      reject(abortError(signal!));
    };
    const wake = (): void => {
      clearInterval(keepAlive);
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    (t.watchers ??= []).push(wake);
    signal?.addEventListener('abort', onAbort, { once: true });
    void closed.then(wake);
  });
}
