/**
 * The patch formats kube-apiserver accepts: JSON patch (RFC 6902), JSON merge patch (RFC 7386)
 * and strategic merge patch. Strategic merge is served as a merge patch for maps and whole-list
 * replacement, which is what it does for every field our controller touches.
 */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function clone<T>(v: T): T {
  return v === undefined ? v : JSON.parse(JSON.stringify(v));
}

export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Strategic merge without per-field merge keys: `$patch`/`$retainKeys` directives are dropped. */
export function strategicMergePatch(target: unknown, patch: unknown): unknown {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v).filter(([k]) => !k.startsWith('$')).map(([k, x]) => [k, strip(x)]));
    }
    return v;
  };
  return mergePatch(target, strip(patch));
}

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new Error(`JSON pointer "${path}" must start with /`);
  return path.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function parentOf(doc: Json, tokens: string[]): { parent: Json; key: string } {
  let cur: Json = doc;
  for (const t of tokens.slice(0, -1)) {
    if (cur === null || typeof cur !== 'object') throw new Error(`path segment "${t}" not found`);
    cur = Array.isArray(cur) ? cur[Number(t)]! : (cur as Record<string, Json>)[t]!;
    if (cur === undefined) throw new Error(`path segment "${t}" not found`);
  }
  return { parent: cur, key: tokens[tokens.length - 1]! };
}

function getAt(doc: Json, path: string): Json {
  let cur: Json = doc;
  for (const t of pointer(path)) {
    if (cur === null || typeof cur !== 'object') throw new Error(`path "${path}" not found`);
    cur = Array.isArray(cur) ? cur[Number(t)]! : (cur as Record<string, Json>)[t]!;
    if (cur === undefined) throw new Error(`path "${path}" not found`);
  }
  return cur;
}

function removeAt(doc: Json, path: string): Json {
  const { parent, key } = parentOf(doc, pointer(path));
  if (Array.isArray(parent)) {
    const i = Number(key);
    if (!(i >= 0 && i < parent.length)) throw new Error(`index ${key} out of range at "${path}"`);
    return parent.splice(i, 1)[0]!;
  }
  if (parent === null || typeof parent !== 'object' || !(key in parent)) throw new Error(`path "${path}" not found`);
  const v = (parent as Record<string, Json>)[key]!;
  delete (parent as Record<string, Json>)[key];
  return v;
}

function addAt(doc: Json, path: string, value: Json): Json {
  const tokens = pointer(path);
  if (tokens.length === 0) return value;
  const { parent, key } = parentOf(doc, tokens);
  if (Array.isArray(parent)) {
    const i = key === '-' ? parent.length : Number(key);
    if (!(i >= 0 && i <= parent.length)) throw new Error(`index ${key} out of range at "${path}"`);
    parent.splice(i, 0, value);
  } else if (parent !== null && typeof parent === 'object') {
    (parent as Record<string, Json>)[key] = value;
  } else {
    throw new Error(`cannot add at "${path}"`);
  }
  return doc;
}

export interface JsonPatchOp {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  from?: string;
  value?: Json;
}

/** RFC 6902; throws (-> 422 in the server) when an operation fails. */
export function jsonPatch(target: unknown, ops: JsonPatchOp[]): unknown {
  if (!Array.isArray(ops)) throw new Error('a JSON patch is an array of operations');
  let doc = clone(target) as Json;
  for (const o of ops) {
    switch (o.op) {
      case 'add': doc = addAt(doc, o.path, clone(o.value as Json)); break;
      case 'remove': removeAt(doc, o.path); break;
      case 'replace': removeAt(doc, o.path); doc = addAt(doc, o.path, clone(o.value as Json)); break;
      case 'move': { const v = removeAt(doc, o.from!); doc = addAt(doc, o.path, v); break; }
      case 'copy': doc = addAt(doc, o.path, clone(getAt(doc, o.from!))); break;
      case 'test':
        if (JSON.stringify(getAt(doc, o.path)) !== JSON.stringify(o.value)) throw new Error(`test failed at "${o.path}"`);
        break;
      default: throw new Error(`unknown JSON patch op "${(o as { op: string }).op}"`);
    }
  }
  return doc;
}
