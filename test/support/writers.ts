import type { AgentProcess } from './agents.ts';

/** One acknowledged write as the client saw it: the answer came between sentMs and answeredMs (wall clock). */
export interface Ack {
  readonly node: string;
  readonly key: string;
  readonly value: string;
  readonly seq: number;
  readonly epoch: number;
  readonly sentMs: number;
  readonly answeredMs: number;
}

export interface Writers {
  readonly acks: Ack[];
  /** Refusals by error code (NOT_PRIMARY, LEASE_LOST, ...). */
  readonly refusals: Record<string, number>;
  stop(): Promise<void>;
}

/**
 * `count` writers per node, each putting unique keys in a loop to every node given, recording what each
 * node acknowledged. A refusal is counted and the writer goes on after a short pause: a test that moves
 * leadership around keeps writing to every node and then checks what was acknowledged where.
 */
export function startWriters(nodes: readonly AgentProcess[], count: number, tag: string): Writers {
  const acks: Ack[] = [];
  const refusals: Record<string, number> = {};
  let running = true;
  let counter = 0;
  const loop = async (agent: AgentProcess, writer: number) => {
    while (running) {
      const key = `${tag}-${agent.node}-${writer}-${counter++}`;
      const value = `${key}@${Date.now()}`;
      const sentMs = Date.now();
      try {
        const result = await agent.client.put(key, value);
        acks.push({ node: agent.node, key, value, seq: result.seq, epoch: result.epoch, sentMs, answeredMs: Date.now() });
      } catch (error) {
        const code = (error as { code?: string }).code ?? 'ERROR';
        refusals[code] = (refusals[code] ?? 0) + 1;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  const loops = nodes.flatMap((agent) => Array.from({ length: count }, (_, writer) => loop(agent, writer)));
  return {
    acks,
    refusals,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Pairs (epoch, seq) that were acknowledged for two different writes. */
export function doubleAcks(acks: readonly Ack[]): string[] {
  const byPosition = new Map<string, Ack>();
  const doubles: string[] = [];
  for (const ack of acks) {
    const position = `${ack.epoch}:${ack.seq}`;
    const other = byPosition.get(position);
    if (other && other.key !== ack.key) doubles.push(`(${position}) ${other.node}:${other.key} and ${ack.node}:${ack.key}`);
    byPosition.set(position, ack);
  }
  return doubles;
}

/**
 * A write `x` acknowledged after `y` had already acknowledged one: sent to x after y's answer came back, so x's
 * acknowledgement is later than y's. When leadership moved once, from x to y, there must be none.
 */
export function ackedAfter(acks: readonly Ack[], x: string, y: string): string | undefined {
  const yAnswers = acks.filter((ack) => ack.node === y).map((ack) => ack.answeredMs);
  if (yAnswers.length === 0) return undefined;
  const firstY = Math.min(...yAnswers);
  const late = acks.find((ack) => ack.node === x && ack.sentMs > firstY);
  return late ? `${x} acknowledged ${late.key} as (${late.epoch}, ${late.seq}), sent at ${late.sentMs}, after ${y}'s first acknowledgement at ${firstY}` : undefined;
}

/**
 * One more write on `agent`, retried while it is refused for a moment (a lease renewing under load): its seq
 * is past everything the node holds, so a follower that applied it has applied everything before it.
 */
export async function markerWrite(agent: AgentProcess, timeoutMs = 20_000): Promise<{ seq: number; epoch: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await agent.client.put(`marker-${Date.now()}`, 'end');
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
