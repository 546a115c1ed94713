/**
 * The subset of a CRD's structural OpenAPI v3 schema that kube-apiserver enforces at admission and
 * our CRDs use: type, properties, required, items, pattern, enum, min/max items, minimum/maximum,
 * additionalProperties, x-kubernetes-preserve-unknown-fields. Unknown fields are pruned, as the
 * real server does for structural schemas. Returns the field errors the 422 response lists.
 */

export interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  pattern?: string;
  enum?: unknown[];
  minItems?: number;
  maxItems?: number;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  additionalProperties?: boolean | Schema;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  anyOf?: Schema[];
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/** Validates and prunes `value` in place (objects only); returns `path: problem` strings. */
export function validateSchema(schema: Schema, value: unknown, path = ''): string[] {
  const errors: string[] = [];
  const at = path || '<root>';
  if (schema.type) {
    const t = typeOf(value);
    const ok = t === schema.type || (schema.type === 'number' && t === 'integer');
    if (!ok) return [`${at}: Invalid value: "${t}": ${at} in body must be of type ${schema.type}`];
  }
  if (schema.enum && !schema.enum.includes(value)) {
    errors.push(`${at}: Unsupported value: ${JSON.stringify(value)}: supported values: ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}`);
  }
  if (typeof value === 'string') {
    if (schema.pattern && !new RegExp(schema.pattern).test(value)) {
      errors.push(`${at}: Invalid value: "${value}": ${at} in body should match '${schema.pattern}'`);
    }
    if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${at}: Invalid value: "${value}": should be at least ${schema.minLength} chars long`);
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${at}: Invalid value: ${value}: should be greater than or equal to ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${at}: Invalid value: ${value}: should be less than or equal to ${schema.maximum}`);
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) errors.push(`${at}: Invalid value: ${value.length}: ${at} in body should have at least ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) errors.push(`${at}: Too many: ${value.length}: must have at most ${schema.maxItems} items`);
    if (schema.items) value.forEach((v, i) => errors.push(...validateSchema(schema.items!, v, `${path}[${i}]`)));
  }
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (obj[r] === undefined) errors.push(`${path ? `${path}.` : ''}${r}: Required value`);
    for (const [k, v] of Object.entries(obj)) {
      const sub = schema.properties?.[k];
      const child = path ? `${path}.${k}` : k;
      if (sub) errors.push(...validateSchema(sub, v, child));
      else if (typeof schema.additionalProperties === 'object') errors.push(...validateSchema(schema.additionalProperties, v, child));
      else if (schema.properties && !schema['x-kubernetes-preserve-unknown-fields'] && schema.additionalProperties !== true) delete obj[k];
    }
  }
  if (schema.anyOf && !schema.anyOf.some((s) => validateSchema(s, JSON.parse(JSON.stringify(value ?? null)), path).length === 0)) {
    errors.push(`${at}: Invalid value: ${JSON.stringify(value)}: matches none of the allowed forms`);
  }
  return errors;
}
