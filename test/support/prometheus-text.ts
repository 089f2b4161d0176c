/**
 * A strict parser of the Prometheus text exposition format, version 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format), written for the tests of
 * GET /metrics: it throws on anything a Prometheus server would refuse or misread, naming the line.
 *
 * Checked: the grammar of names, labels, escapes and values; at most one HELP and one TYPE per family, TYPE
 * before the family's first sample; a family's samples together (never interleaved with another's); no
 * series twice; the suffixes a type allows; histograms with an `le` on every bucket, buckets cumulative and
 * ending in `+Inf` equal to `_count`; counters and histogram parts never negative.
 */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface MetricFamily {
  readonly name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help?: string;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  const seriesSeen = new Set<string>();
  let current: MetricFamily | undefined;
  const lines = text.split('\n');
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('the exposition does not end with a line feed');
  lines.forEach((line, index) => {
    const where = `line ${index + 1} "${line}"`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!match) return; // a plain comment
      const [, keyword, name, rest] = match as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name`);
      const family = familyFor(families, name, current, where, true);
      current = family;
      if (keyword === 'HELP') {
        if (family.help !== undefined) throw new Error(`${where}: second HELP for ${name}`);
        family.help = unescape(rest, false, where);
      } else {
        if (!TYPES.has(rest)) throw new Error(`${where}: unknown type "${rest}"`);
        if (family.samples.length > 0 || (family as { typed?: boolean }).typed) throw new Error(`${where}: TYPE after samples or twice`);
        family.type = rest as MetricFamily['type'];
        (family as { typed?: boolean }).typed = true;
      }
      return;
    }
    const sample = parseSample(line, where);
    const familyName = familyNameOf(sample.name, families);
    const family = familyFor(families, familyName, current, where, false);
    current = family;
    checkSuffix(family, sample.name, where);
    const key = `${sample.name}{${Object.entries(sample.labels).sort().map(([k, v]) => `${k}=${v}`).join(',')}}`;
    if (seriesSeen.has(key)) throw new Error(`${where}: series ${key} twice`);
    seriesSeen.add(key);
    if ((family.type === 'counter' || family.type === 'histogram') && !(sample.value >= 0)) throw new Error(`${where}: a ${family.type} is negative`);
    family.samples.push(sample);
  });
  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family);
  return families;
}

function familyFor(families: Map<string, MetricFamily>, name: string, current: MetricFamily | undefined, where: string, meta: boolean): MetricFamily {
  const known = families.get(name);
  if (known) {
    if (known !== current) throw new Error(`${where}: ${name} continues after another family began`);
    if (meta && known.samples.length > 0) throw new Error(`${where}: HELP/TYPE of ${name} after its samples`);
    return known;
  }
  const family: MetricFamily = { name, type: 'untyped', samples: [] };
  families.set(name, family);
  return family;
}

/** A histogram's `x_bucket`, `x_sum`, `x_count` belong to family `x` when `x` was declared. */
function familyNameOf(sampleName: string, families: Map<string, MetricFamily>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sampleName.endsWith(suffix)) continue;
    const base = sampleName.slice(0, -suffix.length);
    const family = families.get(base);
    if (family && (family.type === 'histogram' || family.type === 'summary')) return base;
  }
  return sampleName;
}

function checkSuffix(family: MetricFamily, sampleName: string, where: string): void {
  if (family.type !== 'histogram') {
    if (sampleName !== family.name) throw new Error(`${where}: ${sampleName} in family ${family.name}`);
    return;
  }
  const suffix = sampleName.slice(family.name.length);
  if (!['_bucket', '_sum', '_count'].includes(suffix)) throw new Error(`${where}: a histogram sample must end in _bucket, _sum or _count`);
}

function checkHistogram(family: MetricFamily): void {
  const buckets = family.samples.filter((sample) => sample.name.endsWith('_bucket'));
  const count = family.samples.find((sample) => sample.name.endsWith('_count'));
  const sum = family.samples.find((sample) => sample.name.endsWith('_sum'));
  if (!count || !sum) throw new Error(`histogram ${family.name} lacks _count or _sum`);
  let previous = -Infinity;
  let previousCount = 0;
  for (const bucket of buckets) {
    const le = bucket.labels.le;
    if (le === undefined) throw new Error(`histogram ${family.name}: a bucket without le`);
    const bound = parseValue(le, `histogram ${family.name} le`);
    if (!(bound > previous)) throw new Error(`histogram ${family.name}: le ${le} not increasing`);
    if (bucket.value < previousCount) throw new Error(`histogram ${family.name}: bucket le=${le} not cumulative`);
    previous = bound;
    previousCount = bucket.value;
  }
  const last = buckets.at(-1);
  if (last?.labels.le !== '+Inf') throw new Error(`histogram ${family.name}: no +Inf bucket last`);
  if (last.value !== count.value) throw new Error(`histogram ${family.name}: +Inf bucket ${last.value} != _count ${count.value}`);
}

function parseSample(line: string, where: string): Sample {
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!nameMatch) throw new Error(`${where}: no metric name`);
  const name = nameMatch[0];
  let rest = line.slice(name.length);
  const labels: Record<string, string> = {};
  if (rest.startsWith('{')) {
    rest = rest.slice(1);
    while (!rest.startsWith('}')) {
      const label = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(rest);
      if (!label || !LABEL_NAME.test(label[1]!)) throw new Error(`${where}: bad label`);
      rest = rest.slice(label[0].length);
      let raw = '';
      for (;;) {
        if (rest === '') throw new Error(`${where}: unterminated label value`);
        if (rest.startsWith('\\')) {
          raw += rest.slice(0, 2);
          rest = rest.slice(2);
        } else if (rest.startsWith('"')) break;
        else {
          raw += rest[0];
          rest = rest.slice(1);
        }
      }
      if (labels[label[1]!] !== undefined) throw new Error(`${where}: label ${label[1]} twice`);
      labels[label[1]!] = unescape(raw, true, where);
      rest = rest.slice(1);
      if (rest.startsWith(',')) rest = rest.slice(1);
      else if (!rest.startsWith('}')) throw new Error(`${where}: expected , or } after a label`);
    }
    rest = rest.slice(1);
  }
  const parts = rest.split(' ');
  if (parts[0] !== '' || parts.length < 2 || parts.length > 3) throw new Error(`${where}: expected one space, a value and an optional timestamp`);
  if (parts[2] !== undefined && !/^-?\d+$/.test(parts[2])) throw new Error(`${where}: bad timestamp`);
  return { name, labels, value: parseValue(parts[1]!, where) };
}

function parseValue(text: string, where: string): number {
  if (text === 'NaN') return NaN;
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`${where}: "${text}" is not a float`);
  return Number(text);
}

/** HELP escapes \\ and \n; label values also \". Any other escape is an error. */
function unescape(text: string, label: boolean, where: string): string {
  return text.replace(/\\(.?)/g, (_all, next: string) => {
    if (next === '\\') return '\\';
    if (next === 'n') return '\n';
    if (next === '"' && label) return '"';
    throw new Error(`${where}: bad escape "\\${next}"`);
  });
}

/** The value of one series (labels must match exactly), or undefined. */
export function valueOf(families: Map<string, MetricFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const family of families.values()) {
    for (const sample of family.samples) {
      if (sample.name !== name) continue;
      const keys = Object.keys(sample.labels);
      if (keys.length === Object.keys(labels).length && keys.every((key) => sample.labels[key] === labels[key])) return sample.value;
    }
  }
  return undefined;
}
