/**
 * Demotion (`quarantineAfter`) made crash-consistent: the entries after a seq leave the log for quarantine
 * files in steps that each leave the directory in a state recovery can finish, so that after a power cut at
 * any instant an entry is either still in the log or in a quarantine file, never in both and never in
 * neither.
 *
 *   1. prepare: copy the cut segment's tail to `<quarantine name>.part`, sync it and the directory. Until the
 *      intent exists this copy means nothing; recovery deletes stray `.part` files.
 *   2. commit: write the plan to `demotion.intent` (unique temporary file, fsync, rename, directory fsync). From
 *      here on the demotion happens, whatever crashes.
 *   3. apply (idempotent): rename the later segments to quarantine names, rename the `.part` to its final
 *      name, write a checkpoint (kind "after a quarantine") at the cut and zero the rest of the old tail,
 *      fdatasync, fsync the directory. The checkpoint carries the watermarks from the plan: the checkpoints
 *      that rode later batches are gone with the tail, and without it a crash here would bring back older
 *      watermarks than the ones already made durable.
 *   4. finish: delete the intent and fsync the directory, before any new append can land where the old
 *      entries were (re-applying the plan after that would zero new entries).
 *
 * Recovery runs step 3 and 4 again whenever it finds an intent, before it reads any segment.
 */
import { crc32c, isTemporaryOf, replaceFileDurable, systemErrorCode, type Logger } from '../util/index.ts';
import {
  CHECKPOINT_QUARANTINE,
  CHECKPOINT_RECORD_BYTES,
  RECORD_HEADER_BYTES,
  RECORD_TYPE_CHECKPOINT,
  SEGMENT_HEADER_BYTES,
  decodeSegmentHeader,
  encodeCheckpointPayload,
  encodeRecordHeader,
  saltSeed,
  sealRecord,
} from './format.ts';
import { assertCheckpointRecord, assertReadWithin, assertWriteRange } from './invariants.ts';
import { ChunkReader } from './scan.ts';
import { copyAside, segmentPath, zeroRange } from './segments.ts';
import type { Storage, StorageFile } from './storage/index.ts';

export const DEMOTION_INTENT_FILE = 'demotion.intent';
/** Suffix of a tail copy not yet committed by an intent. */
export const DEMOTION_PART_SUFFIX = '.part';
/** An intent is one JSON line well under this. */
const INTENT_BYTES_MAX = 64 * 1024;

export interface DemotionPlan {
  /** Entries after this seq are set aside. */
  readonly keepSeq: number;
  /** The segment that holds the cut, and the byte range of its records that goes aside. */
  readonly segmentId: number;
  readonly cutOffset: number;
  readonly endOffset: number;
  /** Segments after it, moved aside whole. */
  readonly laterSegmentIds: readonly number[];
  /** Wall-clock ms in the quarantine file names and the checkpoint's timestamp. */
  readonly stampMs: number;
  /** The state the checkpoint at the cut records (watermarks already clamped to keepSeq). */
  readonly epoch: number;
  readonly replicated: number;
  readonly replicaAcked: number;
  readonly retentionFloor: number;
  readonly logFirstSeq: number;
}

export function quarantineFileName(segmentId: number, offset: number, stampMs: number): string {
  return `quarantine-${String(segmentId).padStart(10, '0')}-${offset}-${stampMs}.log`;
}

/** Quarantine files the plan produces, the tail copy last. */
export function demotionFiles(plan: DemotionPlan): string[] {
  const files = plan.laterSegmentIds.map((id) => quarantineFileName(id, 0, plan.stampMs)).reverse();
  if (plan.cutOffset < plan.endOffset) files.push(quarantineFileName(plan.segmentId, plan.cutOffset, plan.stampMs));
  return files;
}

function encodePlan(plan: DemotionPlan): Uint8Array {
  const body = JSON.stringify(plan);
  const crc = crc32c(new TextEncoder().encode(body));
  return new TextEncoder().encode(JSON.stringify({ plan, crc }) + '\n');
}

function decodePlan(bytes: Uint8Array): DemotionPlan | undefined {
  try {
    const { plan, crc } = JSON.parse(new TextDecoder().decode(bytes)) as { plan: DemotionPlan; crc: number };
    if (crc32c(new TextEncoder().encode(JSON.stringify(plan))) !== crc) return undefined;
    return plan;
  } catch {
    return undefined;
  }
}

/** The checkpoint record written at the cut: the same bytes every time the plan is applied. */
function cutCheckpoint(plan: DemotionPlan, seed: number): Uint8Array {
  const bytes = new Uint8Array(CHECKPOINT_RECORD_BYTES);
  const view = new DataView(bytes.buffer);
  encodeRecordHeader(view, 0, RECORD_TYPE_CHECKPOINT, CHECKPOINT_RECORD_BYTES - RECORD_HEADER_BYTES, plan.keepSeq, plan.epoch, plan.stampMs);
  encodeCheckpointPayload(
    {
      kind: CHECKPOINT_QUARANTINE,
      epoch: plan.epoch,
      replicated: plan.replicated,
      replicaAcked: plan.replicaAcked,
      retentionFloor: plan.retentionFloor,
      logFirstSeq: plan.logFirstSeq,
      prevSegmentId: 0,
      prevBytesUsed: 0,
    },
    view,
    RECORD_HEADER_BYTES,
  );
  sealRecord(bytes, view, 0, seed);
  assertCheckpointRecord(view, 0, plan.keepSeq);
  return bytes;
}

/** Step 1: the tail copy, durable under its `.part` name. */
export async function prepareDemotion(storage: Storage, dir: string, segmentFile: StorageFile, plan: DemotionPlan, payloadBytesMax: number): Promise<void> {
  if (plan.cutOffset < plan.endOffset) {
    const part = `${dir}/${quarantineFileName(plan.segmentId, plan.cutOffset, plan.stampMs)}${DEMOTION_PART_SUFFIX}`;
    await storage.unlink(part).catch(() => undefined);
    await copyAside(storage, segmentFile, part, plan.cutOffset, plan.endOffset, new ChunkReader(payloadBytesMax));
  }
  await storage.syncDir(dir);
}

/** Step 2: the commit point: the plan replaces any older intent atomically and durably. */
export async function writeDemotionIntent(storage: Storage, dir: string, plan: DemotionPlan): Promise<void> {
  await replaceFileDurable(storage, `${dir}/${DEMOTION_INTENT_FILE}`, encodePlan(plan));
}

async function renameIfPresent(storage: Storage, from: string, to: string): Promise<boolean> {
  try {
    await storage.rename(from, to);
    return true;
  } catch (error) {
    if (systemErrorCode(error) === 'ENOENT') return false;
    throw error;
  }
}

async function exists(storage: Storage, path: string): Promise<boolean> {
  try {
    await (await storage.open(path, 'read')).close();
    return true;
  } catch (error) {
    if (systemErrorCode(error) === 'ENOENT') return false;
    throw error;
  }
}

/**
 * Step 3, safe to run any number of times. `segmentFile` is an open read-write handle on the cut segment
 * (opened here when not given). The tail is zeroed only if its copy is known to exist, so that no step can
 * ever drop entries that are not in a quarantine file.
 */
export async function applyDemotion(storage: Storage, dir: string, plan: DemotionPlan, logger: Logger, segmentFile?: StorageFile): Promise<void> {
  for (const id of plan.laterSegmentIds) {
    await renameIfPresent(storage, segmentPath(dir, id), `${dir}/${quarantineFileName(id, 0, plan.stampMs)}`);
  }
  let copied = true;
  if (plan.cutOffset < plan.endOffset) {
    const name = quarantineFileName(plan.segmentId, plan.cutOffset, plan.stampMs);
    copied = (await renameIfPresent(storage, `${dir}/${name}${DEMOTION_PART_SUFFIX}`, `${dir}/${name}`)) || (await exists(storage, `${dir}/${name}`));
    if (!copied) logger.error(`demotion after seq ${plan.keepSeq}: the copy ${name} is missing, so the entries stay in segment ${plan.segmentId}`, { plan });
  }
  if (copied) {
    const file = segmentFile ?? (await storage.open(segmentPath(dir, plan.segmentId), 'readwrite'));
    try {
      const header = new Uint8Array(SEGMENT_HEADER_BYTES);
      assertReadWithin(await file.read(header, 0, SEGMENT_HEADER_BYTES, 0), SEGMENT_HEADER_BYTES, `demotion: reading the header of segment ${plan.segmentId}`);
      const decoded = decodeSegmentHeader(header);
      if (!decoded.ok) throw new Error(`segment ${plan.segmentId} of a demotion has a bad header: ${decoded.reason}`);
      const checkpoint = cutCheckpoint(plan, saltSeed(decoded.header.salt));
      assertWriteRange(plan.cutOffset, checkpoint.length, decoded.header.segmentBytes, true, `demotion: the cut checkpoint in segment ${plan.segmentId}`);
      await zeroRange(file, plan.cutOffset + checkpoint.length, plan.endOffset);
      await file.write(checkpoint, 0, checkpoint.length, plan.cutOffset);
      await file.datasync();
    } finally {
      if (!segmentFile) await file.close();
    }
  }
  await storage.syncDir(dir);
}

/** Step 4. */
export async function finishDemotion(storage: Storage, dir: string): Promise<void> {
  await storage.unlink(`${dir}/${DEMOTION_INTENT_FILE}`);
  await storage.syncDir(dir);
}

/**
 * At open, before any segment is read: finish a demotion a crash interrupted, and remove what an uncommitted
 * one left. Returns the plan it finished, if any.
 */
export async function resumeDemotion(storage: Storage, dir: string, names: readonly string[], logger: Logger): Promise<DemotionPlan | undefined> {
  let plan: DemotionPlan | undefined;
  if (names.includes(DEMOTION_INTENT_FILE)) {
    const file = await storage.open(`${dir}/${DEMOTION_INTENT_FILE}`, 'read');
    try {
      const bytes = new Uint8Array(INTENT_BYTES_MAX);
      const n = await file.read(bytes, 0, bytes.length, 0);
      assertReadWithin(n, bytes.length, `demotion: reading ${DEMOTION_INTENT_FILE}`);
      // decodePlan checks the plan's CRC before anything of it is used.
      plan = decodePlan(bytes.subarray(0, n));
    } finally {
      await file.close();
    }
    if (plan) {
      logger.warn(`finishing the demotion after seq ${plan.keepSeq} that was interrupted`, { plan });
      await applyDemotion(storage, dir, plan, logger);
    } else {
      // Written by temporary file and rename, so only media damage gets here: the plan is unknown, and the
      // log is left as it is (the caller repeats the demotion if it still wants it).
      logger.error(`${dir}/${DEMOTION_INTENT_FILE} does not decode; ignoring it, the log keeps the entries it holds`);
    }
    await finishDemotion(storage, dir);
  }
  let removed = false;
  for (const name of names) {
    // The intent's temporaries: unique names now, and the fixed one earlier versions used.
    if (name.endsWith(DEMOTION_PART_SUFFIX) || isTemporaryOf(name, DEMOTION_INTENT_FILE) || name === `${DEMOTION_INTENT_FILE}.tmp`) {
      await storage.unlink(`${dir}/${name}`).catch(() => undefined);
      removed = true;
    }
  }
  if (removed) await storage.syncDir(dir);
  return plan;
}
