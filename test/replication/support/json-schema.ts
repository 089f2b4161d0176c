// A checker for the subset of JSON Schema (draft 7, as AsyncAPI 3 uses it) that broker-config/asyncapi.yaml
// is written in, applied to decoded CBOR values. A keyword it does not know is an error, not a pass, so the
// document cannot say something this checker silently ignores.
//
// CBOR has byte strings where JSON has none: `type: string, format: binary` matches a Uint8Array, and its
// minLength/maxLength count bytes.

/** Keywords that only describe; they never make a value invalid. */
const ANNOTATIONS = new Set(['description', 'title', 'default', 'examples']);
const KEYWORDS = new Set([
  '$ref',
  'type',
  'const',
  'enum',
  'required',
  'properties',
  'additionalProperties',
  'items',
  'additionalItems',
  'minItems',
  'maxItems',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
  'pattern',
  'format',
  'allOf',
]);

export type Schema = Record<string, unknown>;

export class SchemaChecker {
  constructor(private readonly document: Record<string, unknown>) {}

  /** Every problem of `value` against `schema`, each as `<path>: <what>`; empty when it is valid. */
  check(value: unknown, schema: Schema, path = '$'): string[] {
    const problems: string[] = [];
    this.visit(value, schema, path, problems);
    return problems;
  }

  /** Resolve a local reference `#/a/b/c`. */
  resolve(ref: string): Schema {
    if (!ref.startsWith('#/')) throw new Error(`only local references are supported: ${ref}`);
    let node: unknown = this.document;
    for (const part of ref.slice(2).split('/')) {
      if (typeof node !== 'object' || node === null || !(part in node)) throw new Error(`unresolved reference ${ref}`);
      node = (node as Record<string, unknown>)[part];
    }
    return node as Schema;
  }

  private visit(value: unknown, schema: Schema, path: string, problems: string[]): void {
    for (const key of Object.keys(schema)) {
      if (!KEYWORDS.has(key) && !ANNOTATIONS.has(key) && !key.startsWith('x-')) throw new Error(`${path}: schema keyword "${key}" is not supported by this checker`);
    }
    if (typeof schema.$ref === 'string') {
      // Draft 7: next to $ref only annotations may stand.
      for (const key of Object.keys(schema)) {
        if (key !== '$ref' && !ANNOTATIONS.has(key)) throw new Error(`${path}: "${key}" beside $ref is ignored by draft 7; move it into the referenced schema`);
      }
      this.visit(value, this.resolve(schema.$ref), path, problems);
      return;
    }
    for (const part of (schema.allOf as Schema[] | undefined) ?? []) this.visit(value, part, path, problems);
    if ('const' in schema && value !== schema.const) problems.push(`${path}: expected ${JSON.stringify(schema.const)}`);
    if (Array.isArray(schema.enum) && !schema.enum.some((option) => option === value)) problems.push(`${path}: ${describe(value)} is not one of ${JSON.stringify(schema.enum)}`);
    if (schema.type !== undefined && !hasType(value, schema.type as string, schema.format as string | undefined)) {
      problems.push(`${path}: expected ${String(schema.type)}${schema.format ? ` (${String(schema.format)})` : ''}, got ${describe(value)}`);
      return;
    }
    this.checkNumber(value, schema, path, problems);
    this.checkString(value, schema, path, problems);
    this.checkArray(value, schema, path, problems);
    this.checkObject(value, schema, path, problems);
  }

  private checkNumber(value: unknown, schema: Schema, path: string, problems: string[]): void {
    if (typeof value !== 'number') return;
    if (typeof schema.minimum === 'number' && value < schema.minimum) problems.push(`${path}: ${value} is below ${schema.minimum}`);
    if (typeof schema.maximum === 'number' && value > schema.maximum) problems.push(`${path}: ${value} is above ${schema.maximum}`);
  }

  private checkString(value: unknown, schema: Schema, path: string, problems: string[]): void {
    const length = typeof value === 'string' ? [...value].length : value instanceof Uint8Array ? value.length : undefined;
    if (length === undefined) return;
    if (typeof schema.minLength === 'number' && length < schema.minLength) problems.push(`${path}: length ${length} is below ${schema.minLength}`);
    if (typeof schema.maxLength === 'number' && length > schema.maxLength) problems.push(`${path}: length ${length} is above ${schema.maxLength}`);
    if (typeof schema.pattern === 'string' && typeof value === 'string' && !new RegExp(schema.pattern, 'u').test(value)) problems.push(`${path}: "${value}" does not match ${schema.pattern}`);
  }

  private checkArray(value: unknown, schema: Schema, path: string, problems: string[]): void {
    if (!Array.isArray(value)) return;
    if (typeof schema.minItems === 'number' && value.length < schema.minItems) problems.push(`${path}: ${value.length} items, fewer than ${schema.minItems}`);
    if (typeof schema.maxItems === 'number' && value.length > schema.maxItems) problems.push(`${path}: ${value.length} items, more than ${schema.maxItems}`);
    const items = schema.items;
    if (Array.isArray(items)) {
      value.forEach((item, index) => {
        const itemSchema = items[index] as Schema | undefined;
        if (itemSchema) this.visit(item, itemSchema, `${path}[${index}]`, problems);
        else if (schema.additionalItems === false) problems.push(`${path}[${index}]: no more items allowed`);
      });
    } else if (items && typeof items === 'object') {
      value.forEach((item, index) => this.visit(item, items as Schema, `${path}[${index}]`, problems));
    }
  }

  private checkObject(value: unknown, schema: Schema, path: string, problems: string[]): void {
    if (!isPlainObject(value)) return;
    const properties = (schema.properties as Record<string, Schema> | undefined) ?? {};
    for (const name of (schema.required as string[] | undefined) ?? []) {
      if (value[name] === undefined) problems.push(`${path}: "${name}" is required`);
    }
    for (const [name, item] of Object.entries(value)) {
      if (item === undefined) continue;
      const propertySchema = properties[name];
      if (propertySchema) this.visit(item, propertySchema, `${path}.${name}`, problems);
      else if (schema.additionalProperties === false) problems.push(`${path}: "${name}" is not allowed`);
    }
  }
}

function hasType(value: unknown, type: string, format: string | undefined): boolean {
  switch (type) {
    case 'string':
      return format === 'binary' ? value instanceof Uint8Array : typeof value === 'string';
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'array':
      return Array.isArray(value);
    case 'object':
      return isPlainObject(value);
    default:
      throw new Error(`type "${type}" is not supported by this checker`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function describe(value: unknown): string {
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (Array.isArray(value)) return 'an array';
  return value === null ? 'null' : `${typeof value} ${JSON.stringify(value)}`;
}
