// The CA's Kubernetes authenticator, as istiod's kubeauth: the caller's
// service-account token is checked by the cluster's TokenReview API with the
// audience istio-ca (TOKEN_AUDIENCES); an authenticated
// system:serviceaccount:NAMESPACE:NAME is that workload's identity. Anything
// else (not authenticated, another audience, not a service account, the API
// unreachable) proves nothing.

import * as k8s from "@kubernetes/client-node";
import type { Logger } from "../../log.js";
import type { Authenticator } from "./ca-service.js";

/** Istio's TOKEN_AUDIENCES default. */
export const ISTIO_CA_AUDIENCE = "istio-ca";

const SERVICE_ACCOUNT = /^system:serviceaccount:([^:]+):([^:]+)$/;

export function tokenReview(kubeConfig: k8s.KubeConfig, log: Logger, audiences: string[] = [ISTIO_CA_AUDIENCE]): Authenticator {
  const api = kubeConfig.makeApiClient(k8s.AuthenticationV1Api);
  return async (token) => {
    let review: k8s.V1TokenReview;
    try {
      review = await api.createTokenReview({ body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token, audiences } } });
    } catch (err) {
      log.error(`ca: TokenReview failed: ${(err as Error).message}`);
      return undefined;
    }
    const status = review.status;
    if (!status?.authenticated) return undefined;
    // The API server says which of the asked audiences the token is for; one of them must be istio-ca's.
    if (status.audiences && !status.audiences.some((a) => audiences.includes(a))) return undefined;
    const m = SERVICE_ACCOUNT.exec(status.user?.username ?? "");
    return m ? { namespace: m[1]!, serviceAccount: m[2]! } : undefined;
  };
}
