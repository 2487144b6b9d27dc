// WebSocket upgrades through the proxy, with the `ws` package as a real client
// and server: routed by the same VirtualService rules, relayed both ways until
// either side closes, on both listener engines.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { serviceEntryYaml, settingsYaml, startTestProxy, type TestProxy, HTTP1_ENGINES } from "../support/proxy.js";

interface EchoServer {
  port: number;
  closes: number[];
  close(): Promise<void>;
}

/** Echoes every message prefixed with its name; "bye" makes it close with 4001. */
async function echoServer(name: string): Promise<EchoServer> {
  const closes: number[] = [];
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  wss.on("connection", (socket, req) => {
    socket.send(`${name} hello ${req.url} host=${req.headers.host} xff=${req.headers["x-forwarded-for"]}`);
    socket.on("message", (data, isBinary) => {
      if (!isBinary && data.toString() === "bye") socket.close(4001, "done");
      else socket.send(isBinary ? Buffer.concat([Buffer.from(name), data as Buffer]) : `${name}: ${data.toString()}`, { binary: isBinary });
    });
    socket.on("close", (code) => closes.push(code));
  });
  await new Promise<void>((r) => wss.once("listening", () => r()));
  return { port: (wss.address() as { port: number }).port, closes, close: () => new Promise((r) => wss.close(() => r())) };
}

/** Collects messages until `count` arrived. */
function nextMessages(ws: WebSocket, count: number): Promise<(string | Buffer)[]> {
  return new Promise((resolve, reject) => {
    const got: (string | Buffer)[] = [];
    const onMessage = (data: Buffer, isBinary: boolean): void => {
      got.push(isBinary ? data : data.toString());
      if (got.length === count) {
        ws.off("message", onMessage);
        resolve(got);
      }
    };
    ws.on("message", onMessage);
    ws.once("error", reject);
  });
}

describe.each(HTTP1_ENGINES)("WebSocket through the %s listener", (engine) => {
  let chat: EchoServer;
  let feed: EchoServer;
  let p: TestProxy;

  beforeAll(async () => {
    chat = await echoServer("chat");
    feed = await echoServer("feed");
    p = await startTestProxy(`${settingsYaml(engine)}---
${serviceEntryYaml("chat", [{ port: chat.port }])}---
${serviceEntryYaml("feed", [{ port: feed.port }])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ws}
spec:
  hosts: [ws.example]
  http:
  - match: [{uri: {prefix: /feed}}]
    route: [{destination: {host: feed}}]
  - match: [{uri: {prefix: /chat}}]
    route: [{destination: {host: chat}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ws-example}
spec:
  hosts: [ws.example]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: 1}}]
`);
  });
  afterAll(async () => {
    await p.close();
    await chat.close();
    await feed.close();
  });

  const open = async (path: string): Promise<{ ws: WebSocket; greeting: string }> => {
    const ws = new WebSocket(`${p.url.replace("http", "ws")}${path}`, { headers: { host: "ws.example" } });
    const first = nextMessages(ws, 1);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return { ws, greeting: (await first)[0] as string };
  };

  it("routes the upgrade by the VirtualService and relays text and binary messages both ways", async () => {
    const { ws, greeting } = await open("/chat/room?id=7");
    expect(greeting).toBe("chat hello /chat/room?id=7 host=ws.example xff=127.0.0.1");
    const replies = nextMessages(ws, 2);
    ws.send("hi");
    ws.send(Buffer.from([1, 2, 3]), { binary: true });
    const [text, binary] = await replies;
    expect(text).toBe("chat: hi");
    expect(binary).toEqual(Buffer.concat([Buffer.from("chat"), Buffer.from([1, 2, 3])]));
    ws.close(1000, "client done");
    await new Promise((r) => ws.once("close", r));
    await new Promise((r) => setTimeout(r, 50));
    expect(chat.closes.at(-1)).toBe(1000);

    const other = await open("/feed");
    expect(other.greeting).toMatch(/^feed hello \/feed /);
    other.ws.close();
  });

  it("passes the server's close, with its code, to the client", async () => {
    const { ws } = await open("/chat");
    const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
    ws.send("bye");
    expect(await closed).toBe(4001);
  });

  it("refuses an upgrade no route matches with 404", async () => {
    const ws = new WebSocket(`${p.url.replace("http", "ws")}/nowhere`, { headers: { host: "ws.example" } });
    const status = await new Promise<number>((resolve) => {
      ws.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.once("error", () => resolve(-1));
    });
    expect(status).toBe(404);
  });
});
