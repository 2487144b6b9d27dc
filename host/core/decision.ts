// The integer decision both matchers return for one request.

import { RC_NO_CLUSTER, RC_NO_ENDPOINT, RC_NO_ROUTE, RC_NO_VHOST } from "../../assembly/layout.js";

export { RC_NO_CLUSTER, RC_NO_ENDPOINT, RC_NO_ROUTE, RC_NO_VHOST };

export interface Decision {
  /** Route index (>= 0) or one of the RC_* codes. */
  code: number;
  vhost: number;
  entry: number;
  route: number;
  dest: number;
  cluster: number;
  endpoint: number;
}

/** The request fields the route table can look at. Header names are lower-case. */
export interface RouteRequest {
  method: string;
  authority: string | undefined;
  path: string;
  query: string | undefined;
  scheme: string;
  /** Only the headers the table references are read; a missing one is undefined. */
  header(name: string): string | undefined;
  /** The downstream address, for clusters that hash on the source IP. */
  remoteAddress?: string;
}

export function emptyDecision(): Decision {
  return { code: RC_NO_VHOST, vhost: -1, entry: -1, route: -1, dest: -1, cluster: -1, endpoint: -1 };
}
