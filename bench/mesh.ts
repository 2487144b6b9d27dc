// The instio config the benchmarks run: settings with one outbound listener and
// a ServiceEntry `bench` whose one endpoint is the benchmark's upstream.

export function benchMesh(o: { port: number; upstreamPort: number; engine?: "h1" | "uws" | "node" | "h2c"; registryOnly?: boolean }): string {
  return `apiVersion: instio.dev/v1alpha1
kind: ProxySettings
metadata: {name: bench}
spec:
${o.registryOnly ? "  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n" : ""}  listeners: {outbound: {address: 127.0.0.1, port: ${o.port}${o.engine ? `, engine: ${o.engine}` : ""}}}
  admin: {address: 127.0.0.1, port: 0}
  agent: {enabled: false}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bench}
spec:
  hosts: [bench.default.svc.cluster.local]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: ${o.upstreamPort}}, labels: {version: v1}}]
`;
}
