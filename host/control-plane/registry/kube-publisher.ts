// What the control plane writes into a live cluster, as istiod does, so that
// injection works with no step by hand:
//   - the ConfigMap istio-ca-root-cert (key root-cert.pem, the mesh's root) in
//     every namespace it sees, which injected sidecars mount to trust the CA
//     (istiod's namespace controller);
//   - the caBundle of its MutatingWebhookConfiguration, so the API server
//     trusts the webhook's certificate (istiod's webhook patcher).
// Each write is retried at the next mesh update until it succeeds; failures
// are logged with the object, never thrown at the caller.

import * as k8s from "@kubernetes/client-node";
import type { Logger } from "../../log.js";

export const ROOT_CONFIGMAP = "istio-ca-root-cert";
export const ROOT_CONFIGMAP_KEY = "root-cert.pem";

export class KubePublisher {
  private readonly core: k8s.CoreV1Api;
  private readonly admission: k8s.AdmissionregistrationV1Api;
  /** Namespaces whose ConfigMap holds this root. */
  private readonly published = new Set<string>();
  private webhookPatched = false;
  private running: Promise<void> = Promise.resolve();

  constructor(
    kubeConfig: k8s.KubeConfig,
    private readonly rootPem: string,
    /** The MutatingWebhookConfiguration to patch (manifests/instio.yaml names it instio-sidecar-injector). */
    private readonly webhookName: string | undefined,
    private readonly log: Logger,
  ) {
    this.core = kubeConfig.makeApiClient(k8s.CoreV1Api);
    this.admission = kubeConfig.makeApiClient(k8s.AdmissionregistrationV1Api);
  }

  /** Brings the cluster in line with the namespaces known now (one pass at a time; the last call's list wins). */
  sync(namespaces: string[]): Promise<void> {
    this.running = this.running.then(() => this.pass(namespaces));
    return this.running;
  }

  private async pass(namespaces: string[]): Promise<void> {
    for (const ns of namespaces) {
      if (this.published.has(ns)) continue;
      try {
        await this.publish(ns);
        this.published.add(ns);
      } catch (err) {
        this.log.error(`kube: ConfigMap ${ns}/${ROOT_CONFIGMAP} not written (retried at the next update): ${message(err)}`);
      }
    }
    if (this.webhookName && !this.webhookPatched) {
      try {
        this.webhookPatched = await this.patchWebhook(this.webhookName);
      } catch (err) {
        this.log.error(`kube: MutatingWebhookConfiguration ${this.webhookName}'s caBundle not written (retried at the next update): ${message(err)}`);
      }
    }
  }

  private async publish(namespace: string): Promise<void> {
    const body: k8s.V1ConfigMap = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: ROOT_CONFIGMAP, namespace, labels: { "istio.io/config": "true" } }, data: { [ROOT_CONFIGMAP_KEY]: this.rootPem } };
    let existing: k8s.V1ConfigMap | undefined;
    try {
      existing = await this.core.readNamespacedConfigMap({ name: ROOT_CONFIGMAP, namespace });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    if (!existing) await this.core.createNamespacedConfigMap({ namespace, body });
    else if (existing.data?.[ROOT_CONFIGMAP_KEY] !== this.rootPem) await this.core.replaceNamespacedConfigMap({ name: ROOT_CONFIGMAP, namespace, body: { ...body, metadata: { ...body.metadata, resourceVersion: existing.metadata?.resourceVersion } } });
  }

  /** True once every webhook of the configuration trusts the root (false: the configuration is not there yet). */
  private async patchWebhook(name: string): Promise<boolean> {
    let config: k8s.V1MutatingWebhookConfiguration;
    try {
      config = await this.admission.readMutatingWebhookConfiguration({ name });
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw err;
    }
    const bundle = Buffer.from(this.rootPem).toString("base64");
    if ((config.webhooks ?? []).every((w) => w.clientConfig.caBundle === bundle)) return true;
    for (const w of config.webhooks ?? []) w.clientConfig.caBundle = bundle;
    await this.admission.replaceMutatingWebhookConfiguration({ name, body: config });
    this.log.info(`kube: MutatingWebhookConfiguration ${name} trusts the mesh's root`);
    return true;
  }
}

function statusOf(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

function message(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string };
  return e.code ? `HTTP ${e.code}${typeof e.body === "string" ? `: ${e.body.slice(0, 200)}` : ""}` : String(e.message ?? err);
}
