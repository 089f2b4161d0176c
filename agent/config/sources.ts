/**
 * Where a config comes from, in the order later wins: the file, the drop-in files its `include` names (as
 * /etc/lastgasp/conf.d/*.yaml, merged in name order), then `LASTGASP_*` environment variables, one per key.
 *
 * Environment names: `LASTGASP_` then the key's path, each level in upper snake case, levels joined by two
 * underscores: power.socPercentMin is LASTGASP_POWER__SOC_PERCENT_MIN, dataDir is LASTGASP_DATA_DIR. Every
 * key that holds a value can be set so (objects cannot, their keys can). The value is read as YAML (numbers,
 * true/false, `[a, b]`, `{url: mqtt://x}`), except where the key wants the text as it is ("0660" stays a
 * string for a mode). Variables under LASTGASP_ that name no key are left alone (the application's own
 * LASTGASP_EPOCH, ...), and `config check` lists them so that a misspelt one is seen.
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { Issue, Node } from './schema-dsl.ts';
import { configSchema } from './schema.ts';

export const ENV_PREFIX = 'LASTGASP_';

export interface ConfigSources {
  /** The merged raw object, before validation. */
  readonly raw: unknown;
  /** The files read, the main one first. */
  readonly files: string[];
  /** The environment variables applied, by name, with the key each set. */
  readonly env: Array<{ name: string; path: string }>;
  /** LASTGASP_* variables that name no key. */
  readonly envUnused: string[];
  readonly issues: Issue[];
}

/** Read `file`, its drop-ins and the environment into one raw config object; problems come back as issues. */
export async function readConfigSources(file: string, env: NodeJS.ProcessEnv = process.env): Promise<ConfigSources> {
  const issues: Issue[] = [];
  const files = [file];
  const main = await readDocument(file, issues, '');
  if (main === undefined) return { raw: undefined, files, env: [], envUnused: [], issues };
  let merged: unknown = main;
  if (isObject(main) && main.include !== undefined) {
    const { include, ...rest } = main;
    merged = rest;
    for (const dropIn of await expandIncludes(include, dirname(file), issues)) {
      files.push(dropIn);
      const document = await readDocument(dropIn, issues, 'include');
      if (isObject(document) && document.include !== undefined) issues.push({ path: 'include', message: `${dropIn} has its own include; drop-in files cannot include others (list them all in ${file})` });
      if (document !== undefined && document !== null) merged = deepMerge(merged, document);
    }
  }
  const applied = applyEnv(merged, env);
  return { raw: applied.raw, files, env: applied.env, envUnused: applied.unused, issues };
}

/** `path`: '' for the main file (the message then reads "config FILE: is not valid YAML"), 'include' for a drop-in. */
async function readDocument(file: string, issues: Issue[], path: string): Promise<unknown> {
  const which = path === '' ? '' : `${file} `;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    issues.push({ path, message: `${which}cannot be read (${(error as Error).message})` });
    return undefined;
  }
  try {
    return extname(file) === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    issues.push({ path, message: `${which}is not valid ${extname(file) === '.json' ? 'JSON' : 'YAML'}: ${(error as Error).message}` });
    return undefined;
  }
}

/**
 * `include`: a path or a list of them, relative to the including file; a `*` in the last part of a path
 * matches any characters (conf.d/*.yaml). A pattern that matches nothing is fine (an empty conf.d); a plain
 * path that does not exist is an error.
 */
async function expandIncludes(include: unknown, base: string, issues: Issue[]): Promise<string[]> {
  const patterns = typeof include === 'string' ? [include] : Array.isArray(include) && include.every((item) => typeof item === 'string') ? (include as string[]) : undefined;
  if (!patterns) {
    issues.push({ path: 'include', message: 'must be a path or a list of paths (e.g. /etc/lastgasp/conf.d/*.yaml)' });
    return [];
  }
  const out: string[] = [];
  for (const pattern of patterns) {
    const full = isAbsolute(pattern) ? pattern : join(base, pattern);
    const name = basename(full);
    if (!name.includes('*')) {
      out.push(full);
      continue;
    }
    if (dirname(full).includes('*')) {
      issues.push({ path: 'include', message: `"${pattern}": "*" is allowed only in the file name` });
      continue;
    }
    const matcher = new RegExp(`^${name.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    const names = await readdir(dirname(full)).catch(() => [] as string[]);
    out.push(...names.filter((entry) => matcher.test(entry) && !entry.startsWith('.')).sort().map((entry) => join(dirname(full), entry)));
  }
  return out;
}

/** Objects merge key by key; anything else (a list, a value) replaces what was there. */
export function deepMerge(base: unknown, over: unknown): unknown {
  if (!isObject(base) || !isObject(over)) return over;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) out[key] = key in out ? deepMerge(out[key], value) : value;
  return out;
}

/** Every key that holds a value, with its environment name: [LASTGASP_POWER__SOC_PERCENT_MIN, power.socPercentMin, node]. */
export function envKeys(): Array<{ name: string; path: string; node: Node<unknown> }> {
  const out: Array<{ name: string; path: string; node: Node<unknown> }> = [];
  const walk = (node: Node<unknown>, path: string[]) => {
    for (const [key, child] of Object.entries(node.children ?? {})) {
      if (child.children) walk(child, [...path, key]);
      else out.push({ name: envName([...path, key]), path: [...path, key].join('.'), node: child });
    }
  };
  walk(configSchema, []);
  return out;
}

export function envName(path: readonly string[]): string {
  return ENV_PREFIX + path.map((key) => key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('__');
}

function applyEnv(raw: unknown, env: NodeJS.ProcessEnv): { raw: unknown; env: Array<{ name: string; path: string }>; unused: string[] } {
  const keys = new Map(envKeys().map((key) => [key.name, key]));
  const applied: Array<{ name: string; path: string }> = [];
  const unused: string[] = [];
  let out = isObject(raw) ? raw : {};
  for (const name of Object.keys(env).filter((candidate) => candidate.startsWith(ENV_PREFIX)).sort()) {
    const key = keys.get(name);
    if (!key) {
      unused.push(name);
      continue;
    }
    const text = env[name]!;
    const path = key.path.split('.');
    out = deepMerge(out, path.reduceRight<unknown>((value, level) => ({ [level]: value }), envValue(text, key.node, key.path))) as Record<string, unknown>;
    applied.push({ name, path: key.path });
  }
  return { raw: out, env: applied, unused };
}

/** YAML's reading of `text`, unless the key refuses that and takes the text as it is. */
function envValue(text: string, node: Node<unknown>, path: string): unknown {
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch {
    return text;
  }
  const asParsed: Issue[] = [];
  node.parse(parsed, path, asParsed);
  if (asParsed.length === 0) return parsed;
  const asText: Issue[] = [];
  node.parse(text, path, asText);
  return asText.length === 0 ? text : parsed;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
