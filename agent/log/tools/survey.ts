/**
 * The read-only survey both operator tools start from: every segment of the directory through the shared
 * probe (agent/log/probe.ts, the one recovery decides on), and the quarantine files. Files are opened
 * read-only and closed at once; a file that retention or recovery of a live agent removes between the
 * listing and the open is skipped.
 */
import { LastgaspError, systemErrorCode } from '../../util/index.ts';
import { isQuarantineFileName, parseSegmentFileName } from '../format.ts';
import { probeSegment, type SegmentProbe } from '../probe.ts';
import type { Storage } from '../storage/index.ts';

export interface SurveyedSegment extends SegmentProbe {
  /** What is wrong with the header or head, for the report; undefined when both are fine or the head is still zero. */
  readonly problem: string | undefined;
}

export interface Survey {
  readonly probes: SurveyedSegment[];
  readonly quarantine: Array<{ file: string; bytes: number }>;
}

async function surveySegment(storage: Storage, path: string, id: number): Promise<SurveyedSegment> {
  const file = await storage.open(path, 'read');
  try {
    const probe = await probeSegment(file, path, id);
    const problem = probe.headerProblem ?? (probe.head || probe.headZero ? undefined : 'head checkpoint does not decode');
    return { ...probe, problem };
  } finally {
    await file.close();
  }
}

export async function surveyLog(storage: Storage, dir: string): Promise<Survey> {
  let names: string[];
  try {
    names = await storage.list(dir);
  } catch (error) {
    throw new LastgaspError('LOG_IO', `cannot read log directory ${dir}: ${(error as Error).message}`, { dir, errno: systemErrorCode(error) });
  }
  const probes: SurveyedSegment[] = [];
  const quarantine: Array<{ file: string; bytes: number }> = [];
  for (const name of names.sort()) {
    const id = parseSegmentFileName(name);
    try {
      if (id !== undefined) probes.push(await surveySegment(storage, `${dir}/${name}`, id));
      else if (isQuarantineFileName(name)) {
        const file = await storage.open(`${dir}/${name}`, 'read');
        quarantine.push({ file: `${dir}/${name}`, bytes: await file.size() });
        await file.close();
      }
    } catch (error) {
      // Retention or recovery of a live agent may remove a file between the listing and the open.
      if (systemErrorCode(error) !== 'ENOENT') throw error;
    }
  }
  return { probes, quarantine };
}

/** The active segment: the newest with a valid head. */
export function activeIndexOf(probes: readonly SurveyedSegment[]): number {
  for (let i = probes.length - 1; i >= 0; i--) if (probes[i]!.head) return i;
  return -1;
}
