// The Kubernetes manifests (manifests/*.yaml): every object validates against
// the Kubernetes API schema (kubernetes-models), and what they name matches
// what the build and the code produce: the image the build tags and the
// injector puts in pods, the control plane's ports (which the image exposes),
// the Service the injected sidecars and the CA client call, the webhook's path.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { MutatingWebhookConfiguration } from "kubernetes-models/admissionregistration.k8s.io/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ClusterRole, ClusterRoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";
import { Namespace, Service, ServiceAccount } from "kubernetes-models/v1";
import { parseAllDocuments } from "yaml";
import { describe, expect, it } from "vitest";
import { defaultInjectOptions, type KubeObject } from "../../host/control-plane/injector/inject.js";
import { IMAGE_PORTS } from "../../host/packaging/image.js";
import { VERSION } from "../../host/version.js";

const DIR = fileURLToPath(new URL("../../manifests/", import.meta.url));
const MODELS: Record<string, new (o: never) => { validate(): void }> = { Namespace, ServiceAccount, Service, Deployment, ClusterRole, ClusterRoleBinding, PodDisruptionBudget, MutatingWebhookConfiguration };
const objects: KubeObject[] = readdirSync(DIR).filter((f) => f.endsWith(".yaml")).flatMap((f) => parseAllDocuments(readFileSync(join(DIR, f), "utf8")).map((d) => d.toJS() as KubeObject));
const find = (kind: string, name: string): KubeObject => objects.find((o) => o.kind === kind && (o.metadata as KubeObject).name === name)!;

describe("manifests", () => {
  it("hold only objects that validate against the Kubernetes API schema", () => {
    expect(objects.length).toBeGreaterThan(8);
    for (const o of objects) {
      const Model = MODELS[o.kind as string];
      expect(Model, `no schema check for ${String(o.kind)}`).toBeDefined();
      new Model!(o as never).validate();
    }
  });

  it("run the image the build tags and the injector puts in pods", () => {
    const deployment = find("Deployment", "istiod");
    const container = ((((deployment.spec as KubeObject).template as KubeObject).spec as KubeObject).containers as KubeObject[])[0]!;
    expect(container.image).toBe(`instio:${VERSION}`);
    expect(container.image).toBe(defaultInjectOptions().image);
    expect((container.args as string[])[0]).toBe("control-plane");
  });

  it("expose the control plane's ports, which the image exposes too, behind istiod's Service name", () => {
    const deployment = find("Deployment", "istiod");
    const ports = ((((deployment.spec as KubeObject).template as KubeObject).spec as KubeObject).containers as { ports: { containerPort: number }[] }[])[0]!.ports.map((p) => p.containerPort);
    expect(ports).toEqual([15010, 15012, 15014, 15017]);
    for (const p of ports) expect(IMAGE_PORTS).toContain(p);
    const service = find("Service", "istiod");
    expect((service.spec as { ports: { targetPort: number }[] }).ports.map((p) => p.targetPort)).toEqual(ports);
    // Where injected sidecars and the CA client look for it.
    expect(`${(service.metadata as KubeObject).name}.${(service.metadata as KubeObject).namespace}.svc`).toBe(defaultInjectOptions().controlPlane);
  });

  it("send the webhook's reviews to /inject on the Service's port for 15017", () => {
    const webhook = find("MutatingWebhookConfiguration", "instio-sidecar-injector");
    const service = find("Service", "istiod");
    const webhookPort = (service.spec as { ports: { port: number; targetPort: number }[] }).ports.find((p) => p.targetPort === 15017)!.port;
    for (const w of webhook.webhooks as { clientConfig: { service: { name: string; namespace: string; path: string; port: number } } }[]) {
      expect(w.clientConfig.service).toEqual({ name: "istiod", namespace: "istio-system", path: "/inject", port: webhookPort });
    }
    const enabled = find("Namespace", "demo");
    expect((enabled.metadata as { labels: Record<string, string> }).labels["istio-injection"]).toBe("enabled");
  });
});
