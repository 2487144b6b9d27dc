// Sidecar injection against golden files (test/unit/testdata/inject): each
// NAME.yaml is injected by `instio inject` (kube-inject) and, for pods, by the
// webhook's admit(), whose JSONPatch applied to the pod must give the same
// pod; NAME.yaml.injected and NAME.patch.json hold the expected outputs
// (UPDATE_GOLDEN=1 writes them again, to be read before committing). Every
// injected object is validated against the Kubernetes API schema
// (kubernetes-models), and the shape Istio's injector gives is checked field by
// field where it matters: container order, restartPolicy, probes, UID 1337,
// capture flags from the annotations, resources, the status annotation.

import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import jsonpatch from "fast-json-patch";
import { Deployment } from "kubernetes-models/apps/v1";
import { Job } from "kubernetes-models/batch/v1";
import { Pod } from "kubernetes-models/v1";
import { parseAllDocuments } from "yaml";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { defaultInjectOptions, injectionRequired, type KubeObject } from "../../host/control-plane/injector/inject.js";
import { injectObject, kubeInject } from "../../host/control-plane/injector/kube-inject.js";
import { admit } from "../../host/control-plane/injector/webhook.js";
import { readIptablesFlags } from "../../host/capture/command.js";
import "../support/fast-check-seed.js";

const DIR = fileURLToPath(new URL("testdata/inject/", import.meta.url));
const OPTIONS = { ...defaultInjectOptions(), image: "instio:test" };
const UPDATE = process.env.UPDATE_GOLDEN === "1";

const docs = (text: string): KubeObject[] => parseAllDocuments(text).map((d) => d.toJS() as KubeObject).filter((d) => d !== null);

function golden(file: string, actual: string): void {
  const path = join(DIR, file);
  if (UPDATE) writeFileSync(path, actual);
  expect(actual).toBe(readFileSync(path, "utf8"));
}

function validate(obj: KubeObject): void {
  const Model = { Pod, Deployment, Job }[obj.kind as string] as (new (o: unknown) => { validate(): void }) | undefined;
  if (Model) new Model(obj).validate();
}

/** The pod spec of a Pod or of a workload's template. */
function podOf(obj: KubeObject): { metadata: KubeObject; spec: KubeObject } {
  if (obj.kind === "Pod") return obj as { metadata: KubeObject; spec: KubeObject };
  return ((obj.spec as KubeObject).template ?? ((obj.spec as KubeObject).jobTemplate as KubeObject)) as { metadata: KubeObject; spec: KubeObject };
}

const inputs = readdirSync(DIR).filter((f) => f.endsWith(".yaml"));

describe("injection (golden files)", () => {
  for (const input of inputs) {
    it(`${input}: kube-inject and the webhook give the golden pod, valid against the Kubernetes schema`, () => {
      const text = readFileSync(join(DIR, input), "utf8");
      const warnings: string[] = [];
      const injected = kubeInject(text, input, OPTIONS, (w) => warnings.push(w));
      golden(`${input}.injected`, injected);
      for (const obj of docs(injected)) validate(obj);
      // The webhook's patch, applied to each pod, gives the same pod as kube-inject.
      const patches: unknown[] = [];
      for (const original of docs(text).filter((d) => d.kind === "Pod")) {
        const review = { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", request: { uid: "u-1", namespace: (original.metadata as KubeObject).namespace ?? "default", object: original } };
        const { response } = admit(review, { inject: OPTIONS, namespaceLabels: () => undefined });
        expect(response.allowed).toBe(true);
        expect(response.uid).toBe("u-1");
        const expected = injectObject(original, OPTIONS).object;
        if (response.patch === undefined) {
          expect(expected).toBe(original);
          continue;
        }
        expect(response.patchType).toBe("JSONPatch");
        const patch = JSON.parse(Buffer.from(response.patch, "base64").toString("utf8")) as jsonpatch.Operation[];
        patches.push(patch);
        expect(jsonpatch.applyPatch(structuredClone(original), patch).newDocument).toEqual(expected);
      }
      if (patches.length > 0) golden(`${input.replace(/\.yaml$/, "")}.patch.json`, `${JSON.stringify(patches, null, 1)}\n`);
    });
  }

  it("gives the native sidecar Istio's shape: init, then the proxy as an always-restarting init container, then the pod's own", () => {
    const pod = docs(kubeInject(readFileSync(join(DIR, "native-sidecar.yaml"), "utf8"), "x", OPTIONS, () => {}))[0]!;
    const spec = pod.spec as { initContainers: KubeObject[]; containers: KubeObject[] };
    expect(spec.initContainers.map((c) => c.name)).toEqual(["instio-init", "instio-proxy", "other-sidecar"]);
    expect(spec.containers.map((c) => c.name)).toEqual(["hello"]);
    const proxy = spec.initContainers[1]!;
    expect(proxy.restartPolicy).toBe("Always");
    expect(proxy.startupProbe).toEqual({ httpGet: { path: "/healthz/ready", port: 15021 }, failureThreshold: 600, periodSeconds: 1, timeoutSeconds: 3 });
    expect(proxy.securityContext).toMatchObject({ runAsUser: 1337, runAsGroup: 1337, runAsNonRoot: true, readOnlyRootFilesystem: true });
    expect(proxy.args).toEqual(["proxy", "--xds", "istiod.istio-system.svc:15010", "--ca", "istiod.istio-system.svc:15012", "--capture"]);
    const env = Object.fromEntries((proxy.env as { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[]).map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]));
    expect(env).toMatchObject({ POD_NAME: "metadata.name", POD_NAMESPACE: "metadata.namespace", INSTANCE_IP: "status.podIP", SERVICE_ACCOUNT: "spec.serviceAccountName", CA_ADDR: "istiod.istio-system.svc:15012" });
    const init = spec.initContainers[0]!;
    expect(init.args).toEqual(["iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020"]);
    expect((init.securityContext as KubeObject).capabilities).toEqual({ add: ["NET_ADMIN", "NET_RAW"], drop: ["ALL"] });
    const meta = pod.metadata as { annotations: Record<string, string>; labels: Record<string, string> };
    expect(JSON.parse(meta.annotations["sidecar.istio.io/status"]!)).toEqual({ initContainers: ["instio-init", "instio-proxy"], containers: null, volumes: ["instio-data", "istio-podinfo", "istio-token", "istiod-ca-cert"], imagePullSecrets: null, revision: "default" });
    expect(meta.labels).toMatchObject({ "security.istio.io/tlsMode": "istio", "service.istio.io/canonical-name": "hello", "service.istio.io/canonical-revision": "latest" });
  });

  it("puts the proxy first in classic mode, holding the app until it is ready", () => {
    const pod = docs(kubeInject(readFileSync(join(DIR, "classic.yaml"), "utf8"), "x", OPTIONS, () => {}))[0]!;
    const spec = pod.spec as { initContainers: KubeObject[]; containers: KubeObject[] };
    expect(spec.initContainers.map((c) => c.name)).toEqual(["migrate", "instio-init"]);
    expect(spec.containers.map((c) => c.name)).toEqual(["instio-proxy", "cart"]);
    expect(spec.containers[0]!.restartPolicy).toBeUndefined();
    expect(spec.containers[0]!.lifecycle).toEqual({ postStart: { exec: { command: ["instio", "wait"] } } });
  });

  it("turns the traffic annotations into instio iptables' flags as Istio's template does, and those flags parse", () => {
    const deployment = docs(kubeInject(readFileSync(join(DIR, "traffic-annotations.yaml"), "utf8"), "x", OPTIONS, () => {}))[0]!;
    const init = (podOf(deployment).spec.initContainers as KubeObject[])[0]!;
    expect(init.args).toEqual(["iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "127.0.0.1/24,10.96.0.1/24", "-x", "10.96.0.2/24,10.96.0.3/24", "-b", "1,2,3", "-d", "15090,15021,4,5,6,15020", "-o", "7,8,9"]);
    const { options } = readIptablesFlags((init.args as string[]).slice(1));
    expect(options.outboundPortsExclude).toEqual(["7", "8", "9"]);
    expect(init.resources).toEqual({ requests: { cpu: "4000m" } });
  });

  it("lists every pod it leaves alone, with the reason", () => {
    const warnings: string[] = [];
    kubeInject(readFileSync(join(DIR, "skipped.yaml"), "utf8"), "x", OPTIONS, (w) => warnings.push(w));
    expect(warnings).toEqual([
      "Skipping injection because Pod host-net: the pod uses the host's network",
      'Skipping injection because Pod opted-out: sidecar.istio.io/inject is "false"',
      'Skipping injection because Deployment opted-out-by-annotation: sidecar.istio.io/inject is "false"',
      "Skipping injection because Pod injected-before: already injected (sidecar.istio.io/status is set)",
      "Skipping injection because Pod system: namespace kube-system is never injected",
    ]);
  });

  it("follows the namespace's istio-injection label when the namespace is known, the pod's label first", () => {
    const pod = { labels: {} };
    expect(injectionRequired(pod, {}, "shop", { "istio-injection": "enabled" })).toEqual({ inject: true });
    expect(injectionRequired(pod, {}, "shop", {})).toEqual({ inject: false, reason: "namespace shop is not labelled istio-injection=enabled" });
    expect(injectionRequired({ labels: { "sidecar.istio.io/inject": "true" } }, {}, "shop", {})).toEqual({ inject: true });
    expect(injectionRequired({ labels: { "sidecar.istio.io/inject": "false" } }, {}, "shop", { "istio-injection": "enabled" }).inject).toBe(false);
  });
});

describe("the webhook's admit() under hostile reviews", () => {
  it("answers every review with allowed true or false and the request's uid, never throwing", () => {
    const anything = fc.anything({ maxDepth: 4 });
    const review = fc.oneof(
      anything,
      fc.record({ request: fc.record({ uid: fc.oneof(fc.string(), anything), namespace: fc.oneof(fc.string(), anything), object: anything }, { requiredKeys: [] }) }),
      fc.record({ request: fc.record({ uid: fc.string({ minLength: 1 }), object: fc.record({ kind: fc.constant("Pod"), metadata: fc.oneof(anything, fc.record({ annotations: fc.dictionary(fc.string(), fc.string()), labels: fc.dictionary(fc.string(), fc.string()) })), spec: fc.record({ containers: fc.array(fc.record({ name: fc.string(), image: fc.string(), ports: fc.oneof(anything, fc.array(fc.record({ containerPort: fc.integer() }))) }, { requiredKeys: [] })), hostNetwork: fc.boolean(), volumes: fc.oneof(anything, fc.array(anything)) }, { requiredKeys: ["containers"] }) }) }) }),
    );
    fc.assert(
      fc.property(review, (r) => {
        const { response } = admit(r, { inject: OPTIONS, namespaceLabels: () => undefined });
        expect(typeof response.allowed).toBe("boolean");
        expect(typeof response.uid).toBe("string");
        if (response.patch) expect(() => JSON.parse(Buffer.from(response.patch!, "base64").toString())).not.toThrow();
      }),
      { numRuns: 500 },
    );
  });
});
