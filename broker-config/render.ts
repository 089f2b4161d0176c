/**
 * Render one broker-config template for an installation:
 *
 *   node --import tsx broker-config/render.ts mosquitto/auth.conf PORT=1883 DATA_DIR=/var/lib/mosquitto \
 *     CONFIG_DIR=/etc/mosquitto/lastgasp PASSWORD_FILE=/etc/mosquitto/lastgasp/passwd > /etc/mosquitto/conf.d/lastgasp.conf
 *
 * Arguments after the template are NAME=value pairs; placeholders with a default in the file may be left
 * out. The rendered file goes to stdout; every missing value is named on stderr and the exit code is 2.
 * `--list` prints the template's placeholders and their defaults instead.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';
import { BROKER_CONFIG_DIR } from './paths.ts';
import { renderTemplate, templateVariables } from './template.ts';

const USAGE = 'usage: render.ts <template, e.g. mosquitto/auth.conf> [--list] [NAME=value ...]';

function main(args: readonly string[]): number {
  const [template, ...rest] = args;
  if (template === undefined) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const path = existsSync(template) ? template : join(BROKER_CONFIG_DIR, template);
  if (!existsSync(path)) {
    process.stderr.write(`render: no template at ${template} (nor under broker-config/)\n${USAGE}\n`);
    return 2;
  }
  const text = readFileSync(path, 'utf8');
  if (rest.includes('--list')) {
    for (const variable of templateVariables(text)) {
      process.stdout.write(`${variable.name}${variable.defaultValue === undefined ? ' (required)' : `=${variable.defaultValue}`}\n`);
    }
    return 0;
  }
  const vars: Record<string, string> = {};
  for (const pair of rest) {
    const at = pair.indexOf('=');
    if (at <= 0) {
      process.stderr.write(`render: "${pair}" is not NAME=value\n${USAGE}\n`);
      return 2;
    }
    vars[pair.slice(0, at)] = pair.slice(at + 1);
  }
  const result = renderTemplate(text, vars);
  if (!result.ok) {
    for (const problem of result.problems) process.stderr.write(`render: ${template}: ${problem}\n`);
    return 2;
  }
  process.stdout.write(result.text);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
