/**
 * Named counters for a link: bytes and frames received, and every dropped byte and frame by reason.
 * Counters only ever grow; a snapshot is a plain object that the agent can publish as it is.
 */
export class Counters {
  private readonly values = new Map<string, number>();

  constructor(initial: readonly string[] = []) {
    for (const name of initial) this.values.set(name, 0);
  }

  add(name: string, amount = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + amount);
  }

  get(name: string): number {
    return this.values.get(name) ?? 0;
  }

  /** Count one dropped frame of `bytes` bytes under `reason` (`drop.<reason>.frames` and `.bytes`). */
  drop(reason: string, bytes: number): void {
    this.add(`drop.${reason}.frames`);
    this.add(`drop.${reason}.bytes`, bytes);
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.values);
  }
}

/** Sum of every `drop.*.bytes` counter, for tests that check that each input byte is accounted for. */
export function droppedBytes(snapshot: Readonly<Record<string, number>>): number {
  let total = 0;
  for (const [name, value] of Object.entries(snapshot)) if (name.startsWith('drop.') && name.endsWith('.bytes')) total += value;
  return total;
}
