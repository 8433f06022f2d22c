/*
 * Small, checked edits of WebAssembly binaries (the format is in the WebAssembly core
 * specification, "Binary Format"). Only what CLAIIM needs: reading sections and function names,
 * setting a memory's maximum, and replacing function bodies.
 */

export interface Section {
  id: number;
  /** Offset of the section's content (after id and size). */
  start: number;
  end: number;
}

export function readU32(bytes: Uint8Array, offset: number): { value: number; next: number } {
  let result = 0;
  let shift = 0;
  let i = offset;
  for (;;) {
    const b = bytes[i++];
    if (b === undefined) throw new Error("truncated LEB128");
    result |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) break;
    shift += 7;
    if (shift > 28) throw new Error("LEB128 too long");
  }
  return { value: result >>> 0, next: i };
}

export function writeU32(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

function readName(bytes: Uint8Array, offset: number): { name: string; next: number } {
  const len = readU32(bytes, offset);
  return { name: Buffer.from(bytes.subarray(len.next, len.next + len.value)).toString("utf8"), next: len.next + len.value };
}

export function sections(bytes: Uint8Array): Section[] {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) throw new Error("not a WebAssembly module");
  const list: Section[] = [];
  let i = 8;
  while (i < bytes.length) {
    const id = bytes[i];
    const size = readU32(bytes, i + 1);
    list.push({ id, start: size.next, end: size.next + size.value });
    i = size.next + size.value;
  }
  if (i !== bytes.length) throw new Error("malformed section table");
  return list;
}

/** The module with the content of some sections (named by their start offset) replaced. */
function rebuild(bytes: Uint8Array, replace: Map<number, Uint8Array>): Uint8Array {
  const parts: Uint8Array[] = [bytes.subarray(0, 8)];
  for (const s of sections(bytes)) {
    const content = replace.get(s.start) ?? bytes.subarray(s.start, s.end);
    parts.push(Uint8Array.from([s.id, ...writeU32(content.length)]), content);
  }
  return Buffer.concat(parts);
}

/** Sets the maximum of the memory the module defines (not imports), in 64 KiB pages. */
export function withMemoryMaximum(bytes: Uint8Array, maxPages: number): Uint8Array {
  const memory = sections(bytes).find((s) => s.id === 5);
  if (!memory) throw new Error("the module defines no memory");
  const count = readU32(bytes, memory.start);
  if (count.value !== 1) throw new Error("expected exactly one memory");
  const flags = bytes[count.next];
  if (flags !== 0 && flags !== 1) throw new Error("unsupported memory limits");
  const min = readU32(bytes, count.next + 1);
  const initial = Math.min(min.value, maxPages);
  const content = Uint8Array.from([...writeU32(1), 1, ...writeU32(initial), ...writeU32(maxPages)]);
  return rebuild(bytes, new Map([[memory.start, content]]));
}

/** Function names from the "name" custom section, by function index. */
export function functionNames(bytes: Uint8Array): Map<string, number> {
  const names = new Map<string, number>();
  for (const s of sections(bytes)) {
    if (s.id !== 0) continue;
    const n = readName(bytes, s.start);
    if (n.name !== "name") continue;
    let i = n.next;
    while (i < s.end) {
      const subId = bytes[i];
      const size = readU32(bytes, i + 1);
      const end = size.next + size.value;
      if (subId === 1) {
        const count = readU32(bytes, size.next);
        let j = count.next;
        for (let k = 0; k < count.value; k++) {
          const index = readU32(bytes, j);
          const name = readName(bytes, index.next);
          names.set(name.name, index.value);
          j = name.next;
        }
      }
      i = end;
    }
  }
  return names;
}

/** Index of the first defined function (imported functions come first). */
export function importedFunctionCount(bytes: Uint8Array): number {
  const imports = sections(bytes).find((s) => s.id === 2);
  if (!imports) return 0;
  const count = readU32(bytes, imports.start);
  let i = count.next;
  let functions = 0;
  for (let k = 0; k < count.value; k++) {
    i = readName(bytes, i).next;
    i = readName(bytes, i).next;
    const kind = bytes[i++];
    switch (kind) {
      case 0:
        functions += 1;
        i = readU32(bytes, i).next;
        break;
      case 1: {
        i += 1; // reftype
        const flags = bytes[i++];
        i = readU32(bytes, i).next;
        if (flags & 1) i = readU32(bytes, i).next;
        break;
      }
      case 2: {
        const flags = bytes[i++];
        i = readU32(bytes, i).next;
        if (flags & 1) i = readU32(bytes, i).next;
        break;
      }
      case 3:
        i += 2;
        break;
      default:
        throw new Error(`unknown import kind ${kind}`);
    }
  }
  return functions;
}

/**
 * Replaces the bodies of defined functions (by function index) with new bodies, each given as its
 * encoded locals and instructions (without the leading size).
 */
export function replaceBodies(bytes: Uint8Array, bodies: Map<number, Uint8Array>): Uint8Array {
  const code = sections(bytes).find((s) => s.id === 10);
  if (!code) throw new Error("the module has no code section");
  const imported = importedFunctionCount(bytes);
  const count = readU32(bytes, code.start);
  const parts: number[][] = [writeU32(count.value)];
  const chunks: Uint8Array[] = [];
  let i = count.next;
  for (let k = 0; k < count.value; k++) {
    const size = readU32(bytes, i);
    const end = size.next + size.value;
    const replacement = bodies.get(imported + k);
    const body = replacement ?? bytes.subarray(size.next, end);
    chunks.push(Uint8Array.from(writeU32(body.length)), body);
    i = end;
  }
  const content = Buffer.concat([Uint8Array.from(parts.flat()), ...chunks]);
  return rebuild(bytes, new Map([[code.start, content]]));
}
