import type { Node } from './schema-dsl.ts';
import { configSchema } from './schema.ts';
import { envName } from './sources.ts';

/**
 * The schema as a commented YAML document: every key with its type, default, meaning and the environment
 * variable that overrides it. Printed by `lastgasp config defaults`; the README's configuration section is
 * generated from the same text.
 */
export function describeConfig(): string {
  const lines = [
    '# lastgasp agent configuration (YAML or JSON). Keys without a default are required.',
    '# Later sources win: this file, then the drop-ins its "include" names (merged in name order, objects key by',
    '# key), then one LASTGASP_* environment variable per key, named as shown after "env" (the path in upper',
    '# snake case, levels joined by "__"; the value is read as YAML: 5, true, [a, b], {url: mqtt://x}).',
    '# Drop-in files: a path or a list, relative to this file; "*" in the file name matches [list of paths]',
    '# include: ["conf.d/*.yaml"]',
  ];
  describeChildren(configSchema, 0, [], lines);
  return lines.join('\n') + '\n';
}

function describeChildren(node: Node<unknown>, depth: number, path: string[], lines: string[]): void {
  const indent = '  '.repeat(depth);
  for (const [key, child] of Object.entries(node.children ?? {})) {
    const env = child.children ? '' : ` (env ${envName([...path, key])})`;
    lines.push(`${indent}# ${child.description} [${child.typeText}]${env}`);
    if (child.children) {
      lines.push(`${indent}${key}:`);
      describeChildren(child, depth + 1, [...path, key], lines);
    } else if (child.defaultValue !== undefined) {
      lines.push(`${indent}${key}: ${JSON.stringify(child.defaultValue)}`);
    } else {
      lines.push(`${indent}${child.optional ? '# ' : ''}${key}: ${child.optional ? '(optional)' : '(required)'}`);
    }
  }
}
