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
 * Resolves when `t.next` exceeds `seen`, or when `closed()` is resolved; rejects with an
 * AbortError when `signal` aborts.
 */
export function waitForAppend(t: Watchable, seen: number, closed: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (t.next > seen) return Promise.resolve();
  if (signal?.aborted) return Promise.reject(abortError(signal));
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      if (t.watchers) t.watchers = t.watchers.filter((w) => w !== wake);
      reject(abortError(signal!));
    };
    const wake = (): void => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    (t.watchers ??= []).push(wake);
    signal?.addEventListener('abort', onAbort, { once: true });
    void closed.then(wake);
  });
}
