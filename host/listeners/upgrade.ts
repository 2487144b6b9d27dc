// WebSocket upgrades (HTTP/1.1 `Upgrade: websocket`): routed by the same route
// core decision as any request (virtual host, route, weighted destination,
// endpoint), then relayed both ways until either side closes. The node
// listener relays the raw connection; the uWS listener, which speaks WebSocket
// itself, relays messages through a `ws` client to the upstream.
//
// Route filters (faults, CORS, header edits, rewrites, retries) do not apply to
// upgrades yet; local replies do: 404 NR, 503 NC/UH, 502 under REGISTRY_ONLY,
// a route's redirect or direct response, 503 UF when the upstream refuses.

import { connect, type Socket } from "node:net";
import { RC_NO_CLUSTER, RC_NO_ENDPOINT, RC_NO_ROUTE, RC_NO_VHOST, type RouteRequest } from "../core/decision.js";
import { writeRequest } from "../core/request-fields.js";
import { splitAuthority } from "../http/authority.js";
import { headerValue } from "./downstream.js";
import { isHopByHop } from "../http/headers.js";
import { random32 } from "../pipeline/random.js";
import type { PipelineOptions } from "../pipeline/options.js";
import * as Reply from "../http/local-reply.js";

/** An upgrade request's fields, as the route core reads them, from a flat [name, value, ...] header list. */
export function upgradeRequest(method: string, target: string, headers: string[], remoteAddress: string, scheme: string): RouteRequest {
  const q = target.indexOf("?");
  const authority = headerValue(headers, "host");
  return {
    method,
    authority,
    path: q < 0 ? target : target.slice(0, q),
    query: q < 0 ? undefined : target.slice(q + 1),
    scheme,
    remoteAddress,
    header: (name) => headerValue(headers, name),
  };
}

export type UpgradeDecision =
  | { kind: "reply"; status: number; headers: string[]; body: string }
  | { kind: "forward"; host: string; port: number };

type UpgradeReply = Extract<UpgradeDecision, { kind: "reply" }>;

function reply(r: Reply.LocalReply, headers: string[] = []): UpgradeReply {
  return { kind: "reply", status: r.status, headers, body: typeof r.body === "string" ? r.body : r.body.toString() };
}

/**
 * Where an upgrade request goes, or what to answer instead; `done` hears it
 * (at once, or after a passthrough destination is resolved and checked).
 */
export function decideUpgrade(options: PipelineOptions, req: RouteRequest, done: (d: UpgradeDecision) => void): void {
  const d = decide(options, req);
  if (d.kind !== "passthrough") {
    done(d);
    return;
  }
  options.passthrough.resolve(d.host, d.port, (v) => {
    if (v.ok) done({ kind: "forward", host: v.address, port: d.port });
    else if (v.reason === "unresolvable") done(reply(Reply.upstreamReset("connection failure", v.detail, false)));
    else done(reply(v.reason === "self" ? Reply.PASSTHROUGH_LOOP : Reply.PASSTHROUGH_LOOPBACK));
  });
}

function decide(options: PipelineOptions, req: RouteRequest): UpgradeDecision | { kind: "passthrough"; host: string; port: number } {
  if (!req.authority) return reply(Reply.BAD_REQUEST);
  const snapshot = options.holder.current;
  if (!writeRequest(snapshot.core, snapshot.headerNames, req)) return reply(Reply.HEADERS_TOO_LARGE);
  const code = snapshot.core.route(random32());
  if (code === RC_NO_VHOST) {
    if (snapshot.config.gateway) return reply(Reply.NO_ROUTE);
    if (snapshot.config.settings.outboundTrafficPolicy === "REGISTRY_ONLY") return reply(Reply.BLOCKED_BY_REGISTRY_ONLY);
    return passthrough(req.authority, 80);
  }
  if (code === RC_NO_ROUTE) return reply(Reply.NO_ROUTE);
  if (code === RC_NO_CLUSTER) return reply(Reply.NO_CLUSTER);
  if (code === RC_NO_ENDPOINT) return reply(Reply.NO_HEALTHY_UPSTREAM);
  const action = snapshot.config.routes[code]!.action;
  if (action.kind === "direct") return { kind: "reply", status: action.status, headers: [], body: action.body.toString() };
  if (action.kind === "redirect") return { kind: "reply", status: action.status, headers: [], body: "" };
  const cluster = snapshot.config.clusters[snapshot.core.cluster]!;
  if (cluster.passthrough) return passthrough(req.authority, cluster.port);
  const ep = snapshot.endpoints[snapshot.core.endpoint]!;
  const { host, port } = splitAuthority(ep.hostPort);
  return { kind: "forward", host, port: Number(port) };
}

function passthrough(authority: string, defaultPort: number): UpgradeDecision | { kind: "passthrough"; host: string; port: number } {
  const { host, port } = splitAuthority(authority);
  const p = port === undefined ? defaultPort : Number(port);
  if (!Number.isInteger(p) || p < 1 || p > 65535) return reply(Reply.BAD_REQUEST);
  return { kind: "passthrough", host, port: p };
}

/** The headers sent upstream with an upgrade: the client's, minus hop-by-hop ones other than the upgrade itself, plus x-forwarded-*. */
export function upgradeHeaders(headers: readonly string[], remoteAddress: string, scheme: string): string[] {
  const out: string[] = [];
  let forwardedFor: string | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (name === "x-forwarded-for") {
      forwardedFor = forwardedFor ? `${forwardedFor}, ${headers[i + 1]}` : headers[i + 1];
      continue;
    }
    if (isHopByHop(name) && name !== "connection" && name !== "upgrade") continue;
    out.push(name, headers[i + 1]!);
  }
  out.push("x-forwarded-for", forwardedFor ? `${forwardedFor}, ${remoteAddress}` : remoteAddress);
  if (!headers.includes("x-forwarded-proto")) out.push("x-forwarded-proto", scheme);
  return out;
}

export function replyBytes(d: UpgradeReply): string {
  const headers = [...d.headers, "content-length", String(Buffer.byteLength(d.body)), "connection", "close"];
  let head = `HTTP/1.1 ${d.status} ${d.status === 404 ? "Not Found" : d.status >= 500 ? "Service Unavailable" : "Error"}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${head}\r\n${d.body}`;
}

/**
 * Node listener: connects to the upstream, sends the upgrade request as
 * received (plus x-forwarded-*), then pipes bytes both ways; the upstream's
 * 101 (or refusal) reaches the client unchanged.
 */
export function relayRawUpgrade(decision: UpgradeDecision, client: Socket, head: Buffer, requestLine: string, headers: string[]): void {
  if (decision.kind === "reply") {
    client.end(replyBytes(decision));
    return;
  }
  const upstream = connect(decision.port, decision.host.replace(/^\[|\]$/g, ""));
  upstream.once("connect", () => {
    let text = `${requestLine}\r\n`;
    for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
    upstream.write(`${text}\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  upstream.once("error", (err) => {
    if (upstream.readyState === "opening" || !upstream.bytesRead) {
      client.end(replyBytes(reply(Reply.upstreamReset("connection failure", err.message, false))));
    } else client.destroy();
  });
  client.once("error", () => upstream.destroy());
  client.once("close", () => upstream.destroy());
  upstream.once("close", () => client.destroy());
}
