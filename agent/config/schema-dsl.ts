/**
 * A small schema language: each node parses an unknown value into a typed one, collecting every problem
 * as `path: message` rather than stopping at the first. The same nodes carry defaults and descriptions,
 * so that `lastgasp config defaults` prints documentation that cannot drift from what is validated.
 */
export interface Issue {
  readonly path: string;
  readonly message: string;
}

export interface Node<T> {
  readonly description: string;
  /** Present when the field may be left out; the value used then. */
  readonly defaultValue?: T | undefined;
  readonly optional: boolean;
  /** Human-readable type for documentation ("integer 1..65535", "one of: a, b"). */
  readonly typeText: string;
  parse(value: unknown, path: string, issues: Issue[]): T | undefined;
  /** For objects: the child nodes, for documentation. */
  readonly children?: Readonly<Record<string, Node<unknown>>>;
  readonly item?: Node<unknown>;
}

export type Infer<N> = N extends Node<infer T> ? T : never;

interface Common<T> {
  description: string;
  default?: T;
  optional?: boolean;
}

function base<T>(common: Common<T>, typeText: string, parse: Node<T>['parse']): Node<T> {
  return {
    description: common.description,
    defaultValue: common.default,
    optional: common.optional === true || common.default !== undefined,
    typeText,
    parse,
  };
}

function show(value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 60 ? text.slice(0, 57) + '...' : text;
}

export function string(common: Common<string> & { pattern?: RegExp; patternText?: string; minLength?: number }): Node<string> {
  const typeText = common.patternText ?? 'string';
  return base(common, typeText, (value, path, issues) => {
    if (typeof value !== 'string') {
      issues.push({ path, message: `${show(value)} is not a string (expected ${typeText})` });
      return undefined;
    }
    if ((common.minLength ?? 1) > value.length) {
      issues.push({ path, message: `must not be empty` });
      return undefined;
    }
    if (common.pattern && !common.pattern.test(value)) {
      issues.push({ path, message: `${show(value)} is not valid (expected ${typeText})` });
      return undefined;
    }
    return value;
  });
}

export function integer(common: Common<number> & { min?: number; max?: number; unit?: string }): Node<number> {
  const min = common.min ?? Number.MIN_SAFE_INTEGER;
  const max = common.max ?? Number.MAX_SAFE_INTEGER;
  const range = `${common.min ?? ''}..${common.max ?? ''}`;
  const typeText = `integer ${range}${common.unit ? ' ' + common.unit : ''}`;
  return base(common, typeText, (value, path, issues) => {
    if (typeof value !== 'number' || !Number.isInteger(value)) {
      issues.push({ path, message: `${show(value)} is not an integer (expected ${typeText})` });
      return undefined;
    }
    if (value < min || value > max) {
      issues.push({ path, message: `${value} is out of range (expected ${typeText})` });
      return undefined;
    }
    return value;
  });
}

export function number(common: Common<number> & { min?: number; max?: number; unit?: string }): Node<number> {
  const typeText = `number ${common.min ?? ''}..${common.max ?? ''}${common.unit ? ' ' + common.unit : ''}`;
  return base(common, typeText, (value, path, issues) => {
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      issues.push({ path, message: `${show(value)} is not a number (expected ${typeText})` });
      return undefined;
    }
    if (value < (common.min ?? -Infinity) || value > (common.max ?? Infinity)) {
      issues.push({ path, message: `${value} is out of range (expected ${typeText})` });
      return undefined;
    }
    return value;
  });
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, kb: 1000, mb: 1000 ** 2, gb: 1000 ** 3 };

/** A byte count: a number, or a string such as "64MiB", "512 KiB", "1GB". */
export function bytes(common: Common<number> & { min?: number; max?: number }): Node<number> {
  const typeText = `bytes (a number or "64MiB", "512KiB", "1GiB")`;
  const check = integer({ description: common.description, min: common.min ?? 0, max: common.max ?? Number.MAX_SAFE_INTEGER, unit: 'bytes' });
  return base(common, typeText, (value, path, issues) => {
    if (typeof value === 'string') {
      const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
      const factor = match ? SIZE_UNITS[(match[2] ?? '').toLowerCase()] : undefined;
      if (!match || factor === undefined) {
        issues.push({ path, message: `${show(value)} is not a size (expected ${typeText})` });
        return undefined;
      }
      return check.parse(Math.round(Number(match[1]) * factor), path, issues);
    }
    return check.parse(value, path, issues);
  });
}

export function boolean(common: Common<boolean>): Node<boolean> {
  return base(common, 'true or false', (value, path, issues) => {
    if (typeof value !== 'boolean') {
      issues.push({ path, message: `${show(value)} is not true or false` });
      return undefined;
    }
    return value;
  });
}

export function oneOf<const V extends string>(values: readonly V[], common: Common<V>): Node<V> {
  const typeText = `one of: ${values.join(', ')}`;
  return base(common, typeText, (value, path, issues) => {
    if (typeof value !== 'string' || !(values as readonly string[]).includes(value)) {
      issues.push({ path, message: `${show(value)} is not allowed (expected ${typeText})` });
      return undefined;
    }
    return value as V;
  });
}

export function url(common: Common<string> & { protocols: readonly string[]; example: string }): Node<string> {
  const typeText = `URL (${common.example})`;
  return base(common, typeText, (value, path, issues) => {
    let parsed: URL | undefined;
    try {
      parsed = typeof value === 'string' ? new URL(value) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!parsed || !common.protocols.includes(parsed.protocol) || parsed.hostname === '') {
      issues.push({ path, message: `${show(value)} is not a URL (expected ${common.example})` });
      return undefined;
    }
    return value as string;
  });
}

export function array<T>(item: Node<T>, common: Common<T[]> & { minItems?: number; maxItems?: number }): Node<T[]> {
  const node = base<T[]>(common, `list of ${item.typeText}`, (value, path, issues) => {
    if (!Array.isArray(value)) {
      issues.push({ path, message: `${show(value)} is not a list` });
      return undefined;
    }
    if (value.length < (common.minItems ?? 0)) {
      issues.push({ path, message: `needs at least ${common.minItems} item(s), has ${value.length}` });
      return undefined;
    }
    if (value.length > (common.maxItems ?? Infinity)) {
      issues.push({ path, message: `allows at most ${common.maxItems} item(s), has ${value.length}` });
      return undefined;
    }
    const out: T[] = [];
    value.forEach((element, index) => {
      const parsed = item.parse(element, `${path}[${index}]`, issues);
      if (parsed !== undefined) out.push(parsed);
    });
    return out.length === value.length ? out : undefined;
  });
  return { ...node, item: item as Node<unknown> };
}

type Shape = Record<string, Node<unknown>>;
type ObjectOf<S extends Shape> = { [K in keyof S]: Infer<S[K]> };

export function object<S extends Shape>(shape: S, common: { description: string; optional?: boolean }): Node<ObjectOf<S>> {
  const allOptional = Object.values(shape).every((child) => child.optional);
  const parse = (value: unknown, path: string, issues: Issue[]): ObjectOf<S> | undefined => {
    const source = value === undefined && allOptional ? {} : value;
    if (typeof source !== 'object' || source === null || Array.isArray(source)) {
      issues.push({ path: path || '(top)', message: `${show(value)} is not an object (a map of keys to values)` });
      return undefined;
    }
    const record = source as Record<string, unknown>;
    const before = issues.length;
    for (const key of Object.keys(record)) {
      if (!(key in shape)) issues.push({ path: join(path, key), message: `unknown key${suggest(key, Object.keys(shape))}` });
    }
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(shape)) {
      const childPath = join(path, key);
      const raw = record[key];
      if (raw === undefined || raw === null) {
        if (child.defaultValue !== undefined) out[key] = structuredClone(child.defaultValue);
        else if (child.children && Object.values(child.children).every((grandchild) => grandchild.optional)) out[key] = child.parse({}, childPath, issues);
        else if (!child.optional) issues.push({ path: childPath, message: `is required (${child.description})` });
        continue;
      }
      out[key] = child.parse(raw, childPath, issues);
    }
    return issues.length === before ? (out as ObjectOf<S>) : undefined;
  };
  return {
    description: common.description,
    defaultValue: undefined,
    optional: common.optional === true || allOptional,
    typeText: 'object',
    parse,
    children: shape,
  };
}

/** A tagged union: `tag` selects which object schema applies. */
export function union<const K extends string, V extends Record<string, Node<unknown>>>(tag: K, variants: V, common: { description: string; default?: Infer<V[keyof V]> }): Node<Infer<V[keyof V]>> {
  const names = Object.keys(variants);
  return base<Infer<V[keyof V]>>(common, `object with ${tag}: ${names.join(' | ')}`, (value, path, issues) => {
    const record = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
    const chosen = record ? record[tag] : undefined;
    const variant = typeof chosen === 'string' ? variants[chosen] : undefined;
    if (!variant) {
      issues.push({ path: join(path, tag), message: `${show(chosen)} is not allowed (expected one of: ${names.join(', ')})` });
      return undefined;
    }
    return variant.parse(value, path, issues) as Infer<V[keyof V]> | undefined;
  });
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function suggest(key: string, known: readonly string[]): string {
  const close = known.find((candidate) => distance(candidate.toLowerCase(), key.toLowerCase()) <= 2);
  return close ? ` (did you mean "${close}"?)` : ` (known keys: ${known.join(', ')})`;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}

/** A map from names (matching `keyPattern`) to values of one kind, e.g. node name -> public key. */
export function record<T>(value: Node<T>, common: Common<Record<string, T>> & { keyPattern: RegExp; keyText: string; minItems?: number }): Node<Record<string, T>> {
  const node = base<Record<string, T>>(common, `map of ${common.keyText} to ${value.typeText}`, (raw, path, issues) => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      issues.push({ path, message: `${show(raw)} is not a map of ${common.keyText} to ${value.typeText}` });
      return undefined;
    }
    const entries = Object.entries(raw as Record<string, unknown>);
    if (entries.length < (common.minItems ?? 0)) {
      issues.push({ path, message: `needs at least ${common.minItems} entr${common.minItems === 1 ? 'y' : 'ies'}, has ${entries.length}` });
      return undefined;
    }
    const before = issues.length;
    const out: Record<string, T> = {};
    for (const [key, item] of entries) {
      if (!common.keyPattern.test(key)) issues.push({ path: join(path, key), message: `is not ${common.keyText}` });
      const parsed = value.parse(item, join(path, key), issues);
      if (parsed !== undefined) out[key] = parsed;
    }
    return issues.length === before ? out : undefined;
  });
  return { ...node, item: value as Node<unknown> };
}
