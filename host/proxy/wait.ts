// `instio wait`: returns once the sidecar answers ready on its health port,
// as Istio's `pilot-agent wait` does in the classic sidecar's postStart hook
// (holdApplicationUntilProxyStarts): the kubelet starts the next container
// only after the hook returns. Exit 0 when ready, 1 after the timeout.

export async function waitUntilReady(url: string, timeoutMs: number, log: (line: string) => void): Promise<number> {
  const until = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < until) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return 0;
      last = `${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  log(`instio wait: ${url} not ready after ${timeoutMs / 1000} s (last: ${last})`);
  return 1;
}
