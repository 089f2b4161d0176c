/**
 * A mistake on a command line, said as the commands of the bridge and of the agent say it (one wording for
 * both): the bridge's commands use it from here, and the agent's argument parser (agent/util/args.ts) takes
 * it from the bridge, since firmware-bridge imports nothing from the agent.
 */

/** node:util parseArgs's errors, said as the CLI says things: what was wrong and what would be right. */
export function explainParseError(error: unknown, known: readonly string[]): string {
  const code = (error as { code?: string }).code;
  const message = (error as Error).message;
  const quoted = /'([^']+)'/.exec(message)?.[1] ?? '';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const option = quoted.split(/[ =]/)[0]!;
    const near = closest(option.replace(/^-+/, ''), known);
    return `unknown option ${option}${near ? ` (did you mean --${near}?)` : ` (known: ${known.map((name) => `--${name}`).join(', ')})`}`;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const option = quoted.split(' ')[0]!;
    if (message.includes('does not take an argument')) return `${option} is a flag and takes no value`;
    return `${option} needs a value (write ${option}=VALUE for a value that begins with "-")`;
  }
  return message;
}

/**
 * The known name a mistyped one most likely meant: one it begins (two letters at least), or the nearest
 * by Levenshtein distance if that is small for its length (2, or a third of it for long names).
 */
export function closest(typed: string, known: readonly string[]): string | undefined {
  const scored = known.map((name) => ({ name, distance: name.startsWith(typed) && typed.length >= 2 ? 1 : levenshtein(typed, name) }));
  const best = scored.reduce<{ name: string; distance: number } | undefined>((kept, next) => (kept === undefined || next.distance < kept.distance ? next : kept), undefined);
  return best !== undefined && best.distance <= Math.max(2, Math.floor(typed.length / 3)) ? best.name : undefined;
}

/** Edits (insert, delete, substitute) from `from` to `to`, one row of the table at a time. */
function levenshtein(from: string, to: string): number {
  let above = Array.from({ length: to.length + 1 }, (_, column) => column);
  for (let row = 1; row <= from.length; row++) {
    const current = [row];
    for (let column = 1; column <= to.length; column++) {
      const substitute = above[column - 1]! + (from[row - 1] === to[column - 1] ? 0 : 1);
      current[column] = Math.min(above[column]! + 1, current[column - 1]! + 1, substitute);
    }
    above = current;
  }
  return above[to.length]!;
}
