// `npm run build:protos`: parses Envoy's protos once and writes the root as
// JSON (protos.ts PROTOS_JSON), which every process and worker then loads
// instead of parsing the .proto files again.

import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { packageFile } from "../package-root.js";
import { parseEnvoyProtos, PROTOS_JSON } from "./protos.js";

const out = fileURLToPath(packageFile(PROTOS_JSON));
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(parseEnvoyProtos().toJSON()));
