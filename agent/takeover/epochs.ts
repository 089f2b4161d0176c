/**
 * Epochs that no two nodes can share. Every member of a group owns the epochs congruent to its rank in the
 * sorted membership (self + siblings, the same list on every node): with members [gw-a, gw-b, gw-c], gw-a
 * owns 1, 4, 7, ..., gw-b owns 2, 5, 8, ..., gw-c owns 3, 6, 9, .... A node that takes the lead takes the
 * smallest epoch it owns above the highest epoch it has durably seen. Two nodes that both decide to lead (a
 * race between standbys, or a restart that did not see a takeover) therefore never lead the same epoch, so
 * an `(epoch, seq)` pair names one write, whatever else goes wrong; the newer epoch wins and the other
 * node demotes itself. A record whose epoch its sender does not own is refused (it betrays a membership
 * that differs between configs, or a forgery).
 *
 * With two members this is the familiar alternation: gw-a 1, gw-b 2, gw-a 3, ...
 */

/** The log stores epochs in 32 bits (agent/log/format.ts), so the wire and the files use the same width. */
export const EPOCH_MAX = 0xffff_ffff;

export function groupMembers(node: string, siblings: readonly string[]): readonly string[] {
  return [...new Set([node, ...siblings])].sort();
}

/** The member that owns `epoch` (epochs start at 1; 0 means "no epoch yet" and has no owner). */
export function epochOwner(members: readonly string[], epoch: number): string | undefined {
  if (!Number.isSafeInteger(epoch) || epoch < 1 || epoch > EPOCH_MAX) return undefined;
  return members[(epoch - 1) % members.length];
}

/** The smallest epoch above `floor` that `node` owns, or undefined when the epoch space is used up. */
export function nextOwnedEpoch(members: readonly string[], node: string, floor: number): number | undefined {
  const rank = members.indexOf(node);
  if (rank < 0) return undefined;
  const size = members.length;
  // Epochs owned by rank r are r + 1 + k * size for k >= 0.
  const k = floor < rank + 1 ? 0 : Math.floor((floor - (rank + 1)) / size) + 1;
  const epoch = rank + 1 + k * size;
  return epoch <= EPOCH_MAX ? epoch : undefined;
}
