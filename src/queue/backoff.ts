/** Exponential backoff with full jitter: a random delay in [0, min(max, base·2^attempt)] seconds. */
export function backoffSeconds(attempt: number, baseSeconds: number, maxSeconds: number, random = Math.random): number {
  const ceiling = Math.min(maxSeconds, baseSeconds * 2 ** Math.max(0, attempt));
  return random() * ceiling;
}
