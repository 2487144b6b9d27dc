// Pike VM for RE2-syntax programs (compiled by host/core/regex/program.ts).
//
// HOT PATH — change with care. Runs inside route() for regex matches, so it
// must not allocate: thread lists, the closure stack and capture slots live in
// scratch memory the host reserved in the image (H_RX_SCRATCH). Every
// instruction is added to a thread list at most once per input position, so a
// run costs O(input length × program size) whatever the pattern: no ReDoS.
// Threads are kept in priority order, which gives RE2's leftmost-first
// submatches.

import {
  H_RX_SCRATCH, H_RX_MAX_INST, RXP_INST_COUNT, RXP_SLOTS, RXP_ANCHORED, RXP_SIZE,
  RXI_OP, RXI_A, RXI_B, RXI_NEXT, RXI_SIZE,
  RX_BYTE_RANGE, RX_BYTE_CLASS, RX_SPLIT, RX_JUMP, RX_SAVE, RX_ASSERT, RX_MATCH,
  RXA_BEGIN_TEXT, RXA_END_TEXT, RXA_BEGIN_LINE, RXA_END_LINE, RXA_WORD_BOUNDARY, RXA_NOT_WORD_BOUNDARY,
  RXS_CAPS, RXS_LIST_A, RXS_LIST_B, RXS_STACK, RXS_WORK,
} from "./layout";

// Per-run state in module globals: no allocation, no closures.
let insts: u32 = 0;
let slots: u32 = 0;
let maxInst: u32 = 0;
let text: u32 = 0;
let textLen: u32 = 0;
let stack: u32 = 0;
let work: u32 = 0;

// A thread list: sparse u32[M], dense u32[M], caps i32[M*S]; its size is kept apart.
@inline function listSparse(list: u32): u32 {
  return list;
}
@inline function listDense(list: u32): u32 {
  return list + maxInst * 4;
}
@inline function listCaps(list: u32, index: u32): u32 {
  return list + maxInst * 8 + index * slots * 4;
}

@inline function contains(list: u32, size: u32, pc: u32): bool {
  const i = load<u32>(listSparse(list) + pc * 4);
  return i < size && load<u32>(listDense(list) + i * 4) == pc;
}

@inline function isWordByte(b: u32): bool {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x5f;
}

function assertHolds(kind: u32, pos: u32): bool {
  if (kind == RXA_BEGIN_TEXT) return pos == 0;
  if (kind == RXA_END_TEXT) return pos == textLen;
  if (kind == RXA_BEGIN_LINE) return pos == 0 || load<u8>(text + pos - 1) == 0x0a;
  if (kind == RXA_END_LINE) return pos == textLen || load<u8>(text + pos) == 0x0a;
  const before = pos > 0 && isWordByte(load<u8>(text + pos - 1));
  const after = pos < textLen && isWordByte(load<u8>(text + pos));
  if (kind == RXA_WORD_BOUNDARY) return before != after;
  if (kind == RXA_NOT_WORD_BOUNDARY) return before == after;
  return false;
}

const FRAME_RESTORE: i32 = -1;

/**
 * Adds the thread at `start` and everything reachable from it without
 * consuming input to `list`, in priority order, with the capture slots in
 * `work`. Returns the list's new size. Iterative: an explicit stack of
 * (pc, -) frames to explore and (FRAME_RESTORE - slot, old value) frames that
 * undo a SAVE when the walk backs out of it.
 */
function addThread(list: u32, size: u32, start: u32, pos: u32): u32 {
  let top: u32 = 0;
  store<i32>(stack, <i32>start);
  top = 1;
  while (top > 0) {
    top--;
    const frame = stack + top * 8;
    const tag = load<i32>(frame);
    if (tag < 0) {
      store<i32>(work + <u32>(FRAME_RESTORE - tag) * 4, load<i32>(frame + 4));
      continue;
    }
    let pc = <u32>tag;
    while (true) {
      if (contains(list, size, pc)) break;
      store<u32>(listSparse(list) + pc * 4, size);
      store<u32>(listDense(list) + size * 4, pc);
      const index = size;
      size++;
      const inst = insts + pc * RXI_SIZE;
      const op = load<u32>(inst + RXI_OP);
      if (op == RX_JUMP) {
        pc = load<u32>(inst + RXI_A);
      } else if (op == RX_SPLIT) {
        store<i32>(stack + top * 8, load<i32>(inst + RXI_B));
        top++;
        pc = load<u32>(inst + RXI_A);
      } else if (op == RX_SAVE) {
        const slot = load<u32>(inst + RXI_A);
        const at = stack + top * 8;
        store<i32>(at, FRAME_RESTORE - <i32>slot);
        store<i32>(at + 4, load<i32>(work + slot * 4));
        top++;
        store<i32>(work + slot * 4, <i32>pos);
        pc = load<u32>(inst + RXI_NEXT);
      } else if (op == RX_ASSERT) {
        if (!assertHolds(load<u32>(inst + RXI_A), pos)) break;
        pc = load<u32>(inst + RXI_NEXT);
      } else {
        // A consuming instruction or MATCH: the thread waits here with its captures.
        if (slots > 0) memory.copy(listCaps(list, index), work, slots * 4);
        break;
      }
    }
  }
  return size;
}

@inline function byteMatches(inst: u32, op: u32, b: u32): bool {
  if (op == RX_BYTE_RANGE) return b >= load<u32>(inst + RXI_A) && b <= load<u32>(inst + RXI_B);
  return (load<u8>(load<u32>(inst + RXI_A) + (b >> 3)) & (1 << (b & 7))) != 0;
}

/**
 * Runs `program` over the `len` bytes at `at`, starting at byte `from`.
 * Returns true on a match; for programs with capture slots the slots of the
 * leftmost-first match are left in the scratch CAPS area.
 */
export function runRegex(image: u32, program: u32, at: u32, len: u32, from: u32): bool {
  const scratch = load<u32>(image + H_RX_SCRATCH);
  maxInst = load<u32>(image + H_RX_MAX_INST);
  insts = program + RXP_SIZE;
  slots = load<u32>(program + RXP_SLOTS);
  const count = load<u32>(program + RXP_INST_COUNT);
  const anchored = load<u32>(program + RXP_ANCHORED) != 0;
  text = at;
  textLen = len;
  stack = load<u32>(scratch + RXS_STACK);
  work = load<u32>(scratch + RXS_WORK);
  const caps = load<u32>(scratch + RXS_CAPS);
  let current = load<u32>(scratch + RXS_LIST_A);
  let next = load<u32>(scratch + RXS_LIST_B);
  let currentSize: u32 = 0;
  let matched = false;
  if (count == 0) return false;

  for (let pos = from; ; pos++) {
    // A new thread starting here has the lowest priority: earlier starts win (leftmost).
    if (!matched && (pos == from || !anchored)) {
      for (let s: u32 = 0; s < slots; s++) store<i32>(work + s * 4, -1);
      currentSize = addThread(current, currentSize, 0, pos);
    }
    if (currentSize == 0) break;
    let nextSize: u32 = 0;
    const b: u32 = pos < len ? <u32>load<u8>(at + pos) : 0x100;
    for (let i: u32 = 0; i < currentSize; i++) {
      const pc = load<u32>(listDense(current) + i * 4);
      const inst = insts + pc * RXI_SIZE;
      const op = load<u32>(inst + RXI_OP);
      if (op == RX_MATCH) {
        matched = true;
        if (slots == 0) return true;
        memory.copy(caps, listCaps(current, i), slots * 4);
        break; // lower-priority threads are cut: leftmost-first
      }
      if ((op == RX_BYTE_RANGE || op == RX_BYTE_CLASS) && b < 0x100 && byteMatches(inst, op, b)) {
        if (slots > 0) memory.copy(work, listCaps(current, i), slots * 4);
        nextSize = addThread(next, nextSize, load<u32>(inst + RXI_NEXT), pos + 1);
      }
    }
    if (pos >= len) break;
    const swap = current;
    current = next;
    next = swap;
    currentSize = nextSize;
  }
  return matched;
}
