// `instio inject -f FILE` (istioctl kube-inject): every Pod and every pod
// template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob,
// ReplicationController) in a YAML stream gets its sidecar; everything else
// passes through unchanged. A skipped object is reported with the reason, as
// kube-inject warns "Skipping injection because ...".

import { parseAllDocuments, stringify } from "yaml";
import { injectionRequired, injectPodSpec, type InjectOptions, type KubeObject } from "./inject.js";

/** Where each kind keeps its pod template (metadata + spec). */
function podTemplateOf(obj: KubeObject): { holder: KubeObject; key: string } | undefined {
  const spec = obj.spec as KubeObject | undefined;
  switch (obj.kind) {
    case "Deployment":
    case "StatefulSet":
    case "DaemonSet":
    case "ReplicaSet":
    case "Job":
    case "ReplicationController":
      return spec?.template ? { holder: spec, key: "template" } : undefined;
    case "CronJob": {
      const job = (spec?.jobTemplate as KubeObject | undefined)?.spec as KubeObject | undefined;
      return job?.template ? { holder: job, key: "template" } : undefined;
    }
    default:
      return undefined;
  }
}

export interface InjectedObject {
  object: KubeObject;
  /** Why it was left alone; undefined when injected or not a workload. */
  skipped?: string;
}

/** One object with its sidecar (a copy), or as it was with the reason. */
export function injectObject(obj: KubeObject, o: InjectOptions): InjectedObject {
  const namespace = String((obj.metadata as KubeObject | undefined)?.namespace ?? "default");
  if (obj.kind === "Pod") {
    const decision = injectionRequired((obj.metadata as KubeObject) ?? {}, (obj.spec as KubeObject) ?? {}, namespace);
    if (!decision.inject) return { object: obj, skipped: decision.reason };
    const { metadata, spec } = injectPodSpec((obj.metadata as KubeObject) ?? {}, (obj.spec as KubeObject) ?? {}, o);
    return { object: { ...obj, metadata, spec } };
  }
  const at = podTemplateOf(obj);
  if (!at) return { object: obj };
  const template = at.holder[at.key] as KubeObject;
  const decision = injectionRequired((template.metadata as KubeObject) ?? {}, (template.spec as KubeObject) ?? {}, namespace);
  if (!decision.inject) return { object: obj, skipped: decision.reason };
  // Copy the path down to the template, so that the input stays as it was.
  const injected = injectPodSpec((template.metadata as KubeObject) ?? {}, (template.spec as KubeObject) ?? {}, o);
  const copy = structuredClone(obj);
  const holder = podTemplateOf(copy)!;
  holder.holder[holder.key] = { ...template, ...injected };
  return { object: copy };
}

/** A YAML stream in, the same stream with sidecars out; skipped workloads are reported through `warn`. */
export function kubeInject(text: string, file: string, o: InjectOptions, warn: (line: string) => void): string {
  const docs = parseAllDocuments(text);
  const out: string[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as KubeObject | null;
    if (value === null || typeof value !== "object") continue;
    const { object, skipped } = injectObject(value, o);
    if (skipped) warn(`Skipping injection because ${value.kind ?? "object"} ${String((value.metadata as KubeObject | undefined)?.name ?? "")}: ${skipped}`);
    out.push(stringify(object, { lineWidth: 0, aliasDuplicateObjects: false }));
  }
  return out.join("---\n");
}
