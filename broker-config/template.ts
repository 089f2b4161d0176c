/**
 * The configuration files in broker-config/ are templates: `${NAME}` is replaced by a value the caller
 * gives, and `${NAME:-default}` by that value or, when none is given, by the default written in the file.
 * The test harness renders them with loopback ports and temporary directories; an installation renders
 * them once with its own (see render.ts and README.md). Nothing else in a file is touched, so the
 * brokers' own syntax (NATS's `$VAR`, for one) passes through unchanged.
 */

/** `${NAME}` or `${NAME:-default}`; names are upper case, as in the files. */
const PLACEHOLDER = /\$\{([A-Z][A-Z0-9_]*)(?::-([^}]*))?\}/g;

export interface TemplateVariable {
  readonly name: string;
  /** The default written in the file, or undefined when the caller must give a value. */
  readonly defaultValue: string | undefined;
}

/** The rendered text, or every problem found (each names the placeholder). */
export type RenderResult = { ok: true; text: string } | { ok: false; problems: readonly string[] };

/** Every placeholder in `text`, in order of first appearance. */
export function templateVariables(text: string): TemplateVariable[] {
  const seen = new Map<string, TemplateVariable>();
  for (const match of text.matchAll(PLACEHOLDER)) {
    const name = match[1] as string;
    if (!seen.has(name)) seen.set(name, { name, defaultValue: match[2] });
  }
  return [...seen.values()];
}

/**
 * Replace the placeholders of `text` by `vars`, falling back to the defaults in the file. Values are
 * inserted as they are; a value with a newline is refused, because it could smuggle a whole directive
 * into the configuration.
 */
export function renderTemplate(text: string, vars: Readonly<Record<string, string>>): RenderResult {
  const problems = new Set<string>();
  const rendered = text.replace(PLACEHOLDER, (_whole, name: string, defaultValue: string | undefined) => {
    const value = vars[name] ?? defaultValue;
    if (value === undefined) {
      problems.add(`\${${name}} has no value and no default`);
      return '';
    }
    if (/[\r\n]/.test(value)) {
      problems.add(`\${${name}}: the value contains a line break`);
      return '';
    }
    return value;
  });
  return problems.size > 0 ? { ok: false, problems: [...problems] } : { ok: true, text: rendered };
}
