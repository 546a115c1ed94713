/**
 * Label and field selectors as kube-apiserver parses them from a query string
 * (`app=web,tier!=db,env in (a,b),!legacy`, `metadata.name=x`).
 */

type LabelRequirement =
  | { op: 'exists' | 'notexists'; key: string }
  | { op: 'in' | 'notin'; key: string; values: string[] }
  | { op: 'eq' | 'ne'; key: string; value: string };

export type Labels = Record<string, string> | undefined;

function splitTopLevel(text: string): string[] {
  const out: string[] = [];
  let depth = 0, cur = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) { out.push(cur); cur = ''; } else cur += ch;
  }
  if (cur.trim() !== '') out.push(cur);
  return out.map((s) => s.trim()).filter(Boolean);
}

/** Parses a label selector; throws on syntax the real server rejects. */
export function parseLabelSelector(text: string): (labels: Labels) => boolean {
  const reqs: LabelRequirement[] = splitTopLevel(text).map((part) => {
    let m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part);
    if (m) return { op: m[2] as 'in' | 'notin', key: m[1]!, values: m[3]!.split(',').map((v) => v.trim()) };
    m = /^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$/.exec(part);
    if (m) return { op: m[2] === '!=' ? 'ne' : 'eq', key: m[1]!, value: m[3]! };
    m = /^(!?)([\w./-]+)$/.exec(part);
    if (m) return { op: m[1] ? 'notexists' : 'exists', key: m[2]! };
    throw new Error(`unable to parse requirement: "${part}"`);
  });
  return (labels) => reqs.every((r) => {
    const has = !!labels && Object.prototype.hasOwnProperty.call(labels, r.key);
    const v = labels?.[r.key];
    switch (r.op) {
      case 'exists': return has;
      case 'notexists': return !has;
      case 'eq': return has && v === r.value;
      case 'ne': return !has || v !== r.value;
      case 'in': return has && r.values.includes(v!);
      case 'notin': return !has || !r.values.includes(v!);
    }
  });
}

/** Field selectors on metadata.name / metadata.namespace (what every resource supports). */
export function parseFieldSelector(text: string): (obj: { metadata?: { name?: string; namespace?: string } }) => boolean {
  const reqs = splitTopLevel(text).map((part) => {
    const m = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (!m) throw new Error(`invalid field selector: "${part}"`);
    if (m[1] !== 'metadata.name' && m[1] !== 'metadata.namespace') {
      throw new Error(`field label not supported: ${m[1]}`);
    }
    return { field: m[1] === 'metadata.name' ? 'name' as const : 'namespace' as const, neg: m[2] === '!=', value: m[3]!.trim() };
  });
  return (obj) => reqs.every((r) => ((obj.metadata?.[r.field] ?? '') === r.value) !== r.neg);
}
