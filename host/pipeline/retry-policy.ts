// The one place that decides what is retriable, from the route's retry policy
// (Istio's retries.retryOn, as Envoy's router reads it), and how long to back
// off. The Exchange asks; the attempt budget, the request body and the
// cluster's max_retries breaker are its part (Exchange.mayRetry).

import type { RetryPolicyModel } from "../config/model.js";

/** Envoy's host_selection_retry_max_attempts in Istio's default policy. */
export const HOST_SELECTION_ATTEMPTS = 5;


/** Does retryOn ask for a retry of this response? */
export function retriableResponse(policy: RetryPolicyModel, status: number, headers: Record<string, string | string[] | undefined>): boolean {
  const on = policy.on;
  if (on.fiveXx && status >= 500) return true;
  if (on.gatewayError && status >= 502 && status <= 504) return true;
  if (on.retriable4xx && status === 409) return true;
  if (on.statusCodes.includes(status)) return true;
  if (on.grpcStatuses.length > 0) {
    const g = headers["grpc-status"];
    if (typeof g === "string" && on.grpcStatuses.includes(Number(g))) return true;
  }
  return false;
}

/** Does retryOn ask for a retry when the attempt failed without a response (a reset, a refused connection)? */
export function retriableFailure(policy: RetryPolicyModel, connectFailure: boolean): boolean {
  const on = policy.on;
  return (connectFailure && on.connectFailure) || on.fiveXx || on.gatewayError || on.reset;
}

/** A per-try timeout: Envoy retries it for 5xx, gateway-error and reset. */
export function retriableTimeout(policy: RetryPolicyModel): boolean {
  const on = policy.on;
  return on.fiveXx || on.gatewayError || on.reset;
}

/** Envoy's backoff before retry `attempts` (1 = the first retry): fully jittered exponential from the base, capped at 10 times it. */
export function backoffMs(policy: RetryPolicyModel, attempts: number): number {
  const base = policy.backoffMs;
  return Math.random() * Math.min(10 * base, base * (2 ** attempts - 1));
}
