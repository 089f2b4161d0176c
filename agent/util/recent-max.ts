/**
 * The largest of the last few values noted (a fixed ring, no allocation per note): what a deadline that
 * must allow for a device's slow moments reads, without remembering a stall from long ago for ever.
 */
export class RecentMax {
  private readonly values: Float64Array;
  private count = 0;
  private next = 0;

  constructor(size: number) {
    this.values = new Float64Array(size);
  }

  note(value: number): void {
    this.values[this.next] = value;
    this.next = (this.next + 1) % this.values.length;
    if (this.count < this.values.length) this.count++;
  }

  /** The largest of the values kept; undefined before the first. */
  max(): number | undefined {
    if (this.count === 0) return undefined;
    let max = -Infinity;
    for (let index = 0; index < this.count; index++) max = Math.max(max, this.values[index]!);
    return max;
  }
}
