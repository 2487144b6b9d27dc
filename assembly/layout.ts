// Byte layout of the compiled route table image and of the per-request area.
//
// This file is the one source of truth for the Wasm boundary: the AssemblyScript
// route core reads these offsets and the TypeScript host (host/core/image.ts,
// host/core/request-area.ts) writes them. It must stay plain constants so that
// both compilers accept it unchanged.
//
// Every integer is little-endian u32/i32. A "string ref" is two u32s: the
// absolute byte offset of UTF-8 bytes in linear memory, then their length.

export const IMAGE_MAGIC = 0x31545349; // "IST1"

// ── Image header ────────────────────────────────────────────────────────────
export const H_MAGIC = 0;
export const H_VHOST_COUNT = 4;
export const H_VHOSTS = 8; //            offset of VHOST records
export const H_DOMAIN_TABLE = 12; //     offset of the exact-domain hash table
export const H_DOMAIN_MASK = 16; //      slot count - 1 (power of two)
export const H_WILDCARD_COUNT = 20;
export const H_WILDCARDS = 24; //        WILDCARD records, longest suffix first
export const H_ENTRIES = 28; //          ENTRY records (one per match block)
export const H_ROUTES = 32; //           ROUTE records
export const H_DESTS = 36; //            DEST records
export const H_CLUSTERS = 40; //         CLUSTER records
export const H_ACTIVE = 44; //           i32 per endpoint: requests in flight (host-maintained)
export const H_ENDPOINT_COUNT = 48;
export const H_ELIGIBLE = 64; //         i32 per endpoint: 1 = may be picked (healthy, or the cluster is in panic); host-maintained
export const H_SIZE = 80;

// ── Exact-domain hash table slot ────────────────────────────────────────────
// Open addressing, linear probing. An empty slot has DS_LEN = EMPTY_SLOT (-1); the path index uses the same marker in PS_LEN.
export const DS_HASH = 0;
export const DS_STR = 4; //  string ref (lower-case domain, may carry ":port")
export const DS_LEN = 8;
export const DS_VHOST = 12;
export const DS_SIZE = 16;
export const EMPTY_SLOT = -1;

// ── Wildcard domain ("*.example.com" stored as its suffix ".example.com") ────
export const WC_STR = 0;
export const WC_LEN = 4;
export const WC_VHOST = 8;
export const WC_SIZE = 12;

// ── Virtual host ────────────────────────────────────────────────────────────
export const VH_UNINDEXED = 0; //     offset of sorted u32 entry indices that need a full scan
export const VH_UNINDEXED_COUNT = 4;
export const VH_PATH_TABLE = 8; //    path index hash table (PS slots)
export const VH_PATH_MASK = 12;
export const VH_PREFIX_LENS = 16; //  bitmap, bit n set = some prefix key has length n
export const VH_FLAGS = 20; //         VHF_* bits
export const VH_MAX_PREFIX = 24; //    longest indexed prefix key: the prefix scan stops there
export const VH_SIZE = 28;
export const VHF_CASE_INSENSITIVE = 1; // some indexed key ignores URI case
export const VHF_EXACT = 2; //             some exact key is case-sensitive (else the whole-path hash is skipped)
export const VHF_EXACT_CI = 4; //          some exact key ignores URI case
export const MAX_INDEXED_PREFIX = 1023; // longer prefixes go to the unindexed list
export const PREFIX_BITMAP_BYTES = 256; // two bitmaps of 1024 bits: case-sensitive, then case-insensitive

// ── Path index slot: (kind, key) → sorted list of entry indices ─────────────
// Exact keys are hashed with murmur3_32 over the whole path (hashWords), prefix
// keys with FNV-1a, which the core extends one byte at a time while it scans the
// path for prefix lengths. Domains use murmur3_32 over lower-cased bytes.
export const PS_HASH = 0;
export const PS_KIND = 4; //  PK_* below
export const PS_STR = 8;
export const PS_LEN = 12;
export const PS_LIST = 16; // offset of sorted u32 entry indices
export const PS_COUNT = 20;
export const PS_SIZE = 24;
export const PK_EXACT = 0;
export const PK_PREFIX = 1;
export const PK_EXACT_CI = 2;
export const PK_PREFIX_CI = 3;

// ── Match entry: one HTTPMatchRequest (or the catch-all of a route without match) ──
export const E_ROUTE = 0; //      route index the entry belongs to
export const E_URI_KIND = 4; //   SM_* (uri)
export const E_URI_CI = 8; //     1 = ignoreUriCase
export const E_URI_STR = 12;
export const E_URI_LEN = 16;
export const E_METHOD_KIND = 20;
export const E_METHOD_STR = 24;
export const E_METHOD_LEN = 28;
export const E_AUTH_KIND = 32;
export const E_AUTH_STR = 36;
export const E_AUTH_LEN = 40;
export const E_SCHEME_KIND = 44;
export const E_SCHEME_STR = 48;
export const E_SCHEME_LEN = 52;
export const E_COND_COUNT = 56;
export const E_CONDS = 60; //      offset of COND records
export const E_SIZE = 64;

// String match kinds (Istio StringMatch, plus "present" for headers/query params)
export const SM_NONE = 0;
export const SM_EXACT = 1;
export const SM_PREFIX = 2;
export const SM_PRESENT = 3;
export const SM_REGEX = 4; // string ref = (program address, 0); see RXP_* below

// ── Header / query-parameter condition ──────────────────────────────────────
export const C_SOURCE = 0; //   CS_HEADER: C_KEY is a request slot; CS_QUERY: C_KEY_STR is the param name
export const C_KEY = 4;
export const C_KEY_STR = 8;
export const C_KEY_LEN = 12;
export const C_KIND = 16; //     SM_*
export const C_INVERT = 20; //   1 = withoutHeaders (missing header treated as empty for value matches)
export const C_VALUE_STR = 24;
export const C_VALUE_LEN = 28;
export const C_SIZE = 32;
export const CS_HEADER = 0;
export const CS_QUERY = 1;

// ── Route (HTTPRoute) and its weighted destinations ─────────────────────────
export const R_DEST_START = 0;
export const R_DEST_COUNT = 4;
export const R_TOTAL_WEIGHT = 8;
export const R_SIZE = 12;

export const D_CLUSTER = 0; //   cluster index, or CLUSTER_MISSING
export const D_CUMULATIVE = 4; // running sum of weights up to and including this one
export const D_SIZE = 8;
export const CLUSTER_MISSING = -1;

// ── Cluster: a contiguous range of endpoints and how to pick one ─────────────
export const CL_EP_START = 0;
export const CL_EP_COUNT = 4;
export const CL_FLAGS = 8; //          CLF_* bits
export const CL_LB = 12; //            LB_*
export const CL_ELIGIBLE_COUNT = 16; // endpoints with ELIGIBLE set (host-maintained)
export const CL_CURSOR = 20; //        ROUND_ROBIN position (core-maintained)
export const CL_TABLE = 24; //         ring (RING_* entries), maglev table or weighted schedule (i32 per slot); host-built
export const CL_TABLE_COUNT = 28; //   entries in use (host-maintained; ring/maglev: 0 = every endpoint ineligible)
export const CL_HASH_SOURCE = 32; //   HS_*: where the consistent-hash key comes from
export const CL_HASH_SLOT = 36; //     HS_HEADER / HS_COOKIE: request slot of the header
export const CL_HASH_NAME_STR = 40; // HS_COOKIE / HS_QUERY: the cookie or parameter name
export const CL_HASH_NAME_LEN = 44;
export const CL_SIZE = 48;
export const CLF_PASSTHROUGH = 1; // resolution NONE: connect to the requested authority
export const CLF_WEIGHTED = 2; //    ROUND_ROBIN / LEAST_REQUEST over unequal weights: CL_TABLE is the schedule of eligible endpoints (host-maintained)
export const LB_LEAST_REQUEST = 0;
export const LB_ROUND_ROBIN = 1;
export const LB_RANDOM = 2;
export const LB_RING_HASH = 3;
export const LB_MAGLEV = 4;
export const HS_NONE = 0;
export const HS_HEADER = 1;
export const HS_COOKIE = 2;
export const HS_QUERY = 3;
export const HS_SOURCE_IP = 4;
// Ring entry: xxHash64 point (u64), then the global endpoint index; sorted by point.
export const RING_POINT = 0;
export const RING_ENDPOINT = 8;
export const RING_SIZE = 16;

// ── Request area: written by the host per request ───────────────────────────
// SLOT_COUNT_MAX slots of (offset u32, length i32; -1 = absent), then bytes.
export const SLOT_METHOD = 0;
export const SLOT_AUTHORITY = 1;
export const SLOT_PATH = 2; //    path without the query string
export const SLOT_QUERY = 3; //   bytes after '?', absent when there is none
export const SLOT_SCHEME = 4;
export const SLOT_SOURCE_IP = 5; //  downstream address, written only when a cluster hashes on it
export const SLOT_FIRST_HEADER = 6;
export const SLOT_COUNT_MAX = 256;
export const SLOT_SIZE = 8;
export const REQUEST_BYTES = 65536; // request bytes beyond this are a 431 before the core is called

// ── Decision area: written by the core per request ──────────────────────────
export const OUT_VHOST = 0;
export const OUT_ENTRY = 4;
export const OUT_ROUTE = 8;
export const OUT_DEST = 12;
export const OUT_CLUSTER = 16;
export const OUT_ENDPOINT = 20; // global endpoint index, -1 when the cluster has none
export const OUT_HASH_MISSING = 24; // 1: the cluster hashes on a cookie the request lacks (the host may generate one)
export const OUT_SIZE = 32;

// Return codes of route(): >= 0 is the route index.
export const RC_NO_VHOST = -1;
export const RC_NO_ROUTE = -2;
export const RC_NO_CLUSTER = -3;
export const RC_NO_ENDPOINT = -4;

// ── Regex programs: RE2 syntax compiled by host/core/regex/program.ts, run by
// the Pike VM in assembly/regex.ts (linear time: no backtracking). ──────────
// A StringMatch of kind SM_REGEX holds the program's address as its string
// offset (length 0). Program header, then instructions:
export const RXP_INST_COUNT = 0;
export const RXP_SLOTS = 4; //   capture slots kept (0 for a yes/no full match)
export const RXP_ANCHORED = 8; // 1 = only a match starting at the first byte counts (full match)
export const RXP_SIZE = 16; //   instructions follow the header
export const RXI_OP = 0;
export const RXI_A = 4;
export const RXI_B = 8;
export const RXI_NEXT = 12; //   successor of a non-branching instruction
export const RXI_SIZE = 16;
export const RX_BYTE_RANGE = 0; // consume one byte in [a, b]
export const RX_BYTE_CLASS = 1; // consume one byte whose bit is set in the 32-byte bitmap at address a
export const RX_SPLIT = 2; //      continue at a (preferred) and at b
export const RX_JUMP = 3; //       continue at a
export const RX_SAVE = 4; //       capture slot a = current position
export const RX_ASSERT = 5; //     zero-width test RXA_* a
export const RX_MATCH = 6;
export const RX_FAIL = 7;
export const RXA_BEGIN_TEXT = 0;
export const RXA_END_TEXT = 1;
export const RXA_BEGIN_LINE = 2;
export const RXA_END_LINE = 3;
export const RXA_WORD_BOUNDARY = 4; //     ASCII word characters, as RE2's \b
export const RXA_NOT_WORD_BOUNDARY = 5;

// Image header fields for the VM's scratch memory, sized by the host for the
// largest program in the image: M instructions, S capture slots.
export const H_RX_SCRATCH = 52; //  RXS_* record
export const H_RX_MAX_INST = 56;
export const H_RX_MAX_SLOTS = 60;
// Scratch record: addresses of the VM's work areas. A thread list is
// sparse u32[M], dense u32[M], caps i32[M*S]; the stack holds 2M+2 frames of
// two i32s; WORK and CAPS hold S i32s each.
export const RXS_CAPS = 0; //   capture slots of the last match (read by the host after regexSearch)
export const RXS_LIST_A = 4;
export const RXS_LIST_B = 8;
export const RXS_STACK = 12;
export const RXS_WORK = 16;
export const RXS_SIZE = 20;
