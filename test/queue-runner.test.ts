import { describe, expect, it } from "vitest";
import { defaultClaimsInFlight } from "../src/queue/runner.ts";

describe("claims in flight", () => {
  it("keeps about 100 rows being claimed at once, 1 to 4 claims, never more than the step slots take", () => {
    expect(defaultClaimsInFlight(8, 5)).toBe(1); // the defaults: 8 slots take one claim of 5
    expect(defaultClaimsInFlight(100, 10)).toBe(4);
    expect(defaultClaimsInFlight(1000, 50)).toBe(2);
    expect(defaultClaimsInFlight(1000, 100)).toBe(1);
    expect(defaultClaimsInFlight(5000, 500)).toBe(1);
    expect(defaultClaimsInFlight(10, 1)).toBe(4);
    expect(defaultClaimsInFlight(2, 1)).toBe(2);
    expect(defaultClaimsInFlight(1, 10)).toBe(1);
  });
});
