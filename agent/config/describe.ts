import type { Node } from './schema-dsl.ts';
import { configSchema } from './schema.ts';

/**
 * The schema as a commented YAML document: every key with its type, default and meaning. Printed by
 * `lastgasp config defaults`; the README's configuration section is generated from the same text.
 */
export function describeConfig(): string {
  const lines = ['# lastgasp agent configuration (YAML or JSON). Keys without a default are required.'];
  describeChildren(configSchema, 0, lines);
  return lines.join('\n') + '\n';
}

function describeChildren(node: Node<unknown>, depth: number, lines: string[]): void {
  const indent = '  '.repeat(depth);
  for (const [key, child] of Object.entries(node.children ?? {})) {
    lines.push(`${indent}# ${child.description} [${child.typeText}]`);
    if (child.children) {
      lines.push(`${indent}${key}:`);
      describeChildren(child, depth + 1, lines);
    } else if (child.defaultValue !== undefined) {
      lines.push(`${indent}${key}: ${JSON.stringify(child.defaultValue)}`);
    } else {
      lines.push(`${indent}${child.optional ? '# ' : ''}${key}: ${child.optional ? '(optional)' : '(required)'}`);
    }
  }
}
