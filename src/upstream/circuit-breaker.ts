/**
 * A circuit breaker around the upstream registry: after `threshold` consecutive failures it opens for
 * `openSeconds`; then one trial call is let through (half-open): success closes it, failure reopens.
 */
export type CircuitState = "closed" | "open" | "half_open";

export class CircuitBreaker {
  private failures = 0;
  private openedAt = 0;
  private trialInFlight = false;
  private stateValue: CircuitState = "closed";

  constructor(
    private readonly threshold: number,
    private readonly openSeconds: number,
    private readonly now: () => number = Date.now,
  ) {}

  get state(): CircuitState {
    if (this.stateValue === "open" && this.now() - this.openedAt >= this.openSeconds * 1000) this.stateValue = "half_open";
    return this.stateValue;
  }

  /** Seconds until a trial call is allowed (0 when calls may go through). */
  get retryAfterSeconds(): number {
    if (this.state !== "open") return 0;
    return Math.max(0, this.openSeconds - (this.now() - this.openedAt) / 1000);
  }

  get consecutiveFailures(): number {
    return this.failures;
  }

  /** Whether a call may go through now. In half-open state only one trial call at a time. */
  allow(): boolean {
    const s = this.state;
    if (s === "closed") return true;
    if (s === "half_open" && !this.trialInFlight) {
      this.trialInFlight = true;
      return true;
    }
    return false;
  }

  success(): void {
    this.failures = 0;
    this.trialInFlight = false;
    this.stateValue = "closed";
  }

  /** The call ended without a verdict on the upstream (its caller gave up): a trial may go again. */
  abandoned(): void {
    this.trialInFlight = false;
  }

  failure(): void {
    this.failures += 1;
    this.trialInFlight = false;
    if (this.stateValue === "half_open" || this.failures >= this.threshold) {
      this.stateValue = "open";
      this.openedAt = this.now();
    }
  }

  snapshot(): { state: CircuitState; consecutiveFailures: number; retryAfterSeconds: number } {
    return { state: this.state, consecutiveFailures: this.failures, retryAfterSeconds: Math.ceil(this.retryAfterSeconds) };
  }
}
