/**
 * Which leader records a node follows: the rules (LEADERSHIP.md) that judge one record against what this
 * node holds durably, its epoch floor and the leader record it saved. Pure: roles.ts applies the verdict
 * (it saves and follows the record, or drops it and counts why), and the rules read and test apart from
 * that sequence.
 */
import type { LeaderMessage } from '../replication/index.ts';
import { epochOwner } from './epochs.ts';

export type LeaderDropReason = 'superseded-claim' | 'below-floor' | 'conflicting' | 'not-owner' | 'not-ours';

export type LeaderVerdict = { readonly follow: true } | { readonly follow: false; readonly reason: LeaderDropReason; readonly why: string };

export interface LeaderView {
  /** This node's name. */
  readonly node: string;
  /** The group's sorted membership (epochs.ts groupMembers). */
  readonly members: readonly string[];
  /** The durable epoch floor (roles.ts floor()). */
  readonly floor: number;
  /** The leader record this node saved last, if any. */
  readonly known: LeaderMessage | undefined;
}

/**
 * A record is followed unless it claims an epoch without knowing the floor (of two racing claims the first
 * delivered wins), lies below the floor, takes the floor's epoch from its holder, names an epoch its sender
 * does not own, or is in this node's name without being the one it saved in this life.
 */
export function judgeLeaderRecord(message: LeaderMessage, view: LeaderView): LeaderVerdict {
  const { node, members, floor, known } = view;
  if (message.prev !== undefined && message.epoch > floor && message.prev < floor) {
    return drop('superseded-claim', `a claim made without knowing epoch ${floor}; the first claim delivered wins`);
  }
  if (message.epoch < floor) return drop('below-floor', `epoch ${message.epoch} is below this node's floor ${floor}`);
  if (message.epoch === floor && known && message.node !== known.node) return drop('conflicting', `epoch ${floor} is already ${known.node}'s`);
  if (message.epoch > floor && epochOwner(members, message.epoch) !== message.node) {
    return drop('not-owner', `epoch ${message.epoch} belongs to ${epochOwner(members, message.epoch) ?? 'nobody'} in this group (${members.join(', ')})`);
  }
  if (message.node === node && !(known && known.node === node && message.epoch === known.epoch)) {
    return drop('not-ours', 'a record in this node\'s name that it did not write in this life');
  }
  return { follow: true };
}

function drop(reason: LeaderDropReason, why: string): LeaderVerdict {
  return { follow: false, reason, why };
}
