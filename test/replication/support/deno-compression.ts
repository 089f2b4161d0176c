/**
 * Runs under Deno 2 (`deno run -A`): the batch compression of agent/replication with Deno's node:zlib. Reads a
 * compressed batch that Node encoded (argument 1, with the group key in hex as argument 2), decodes it, writes
 * one of its own for Node to decode (argument 3), and tries a bomb and a flag that disagrees with the data.
 * Prints one JSON line with what it saw.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Decoder } from 'cbor-x';
import { WireCodec } from '../../../agent/replication/index.ts';
import { bombBody, GROUP, sealRaw, sealUnsigned, SLOW_LINK, telemetryEntries } from './compression-fixtures.ts';

const [input, keyHex, output] = (globalThis as unknown as { Deno: { args: string[] } }).Deno.args as [string, string, string];
const key = Uint8Array.from(keyHex.match(/../g)!.map((byte) => parseInt(byte, 16)));
const codec = new WireCodec(key);
const fromNode = codec.decode(new Uint8Array(readFileSync(input)));
const entries = telemetryEntries(200, 1001);
const ours = codec.encodeBatch({ group: GROUP, node: 'gw-a', epoch: 2, entries }, undefined, SLOW_LINK);
writeFileSync(output, ours);
const own = codec.decode(ours);
const uncompressed = codec.encodeBatch({ group: GROUP, node: 'gw-a', epoch: 2, entries });
const plainBody = (new Decoder({ useRecords: false, mapsAsObjects: true }).decode(uncompressed) as { b: Uint8Array }).b;
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
console.log(
  JSON.stringify({
    fromNode: fromNode.ok && fromNode.kind === 'batch' ? { count: fromNode.message.entries.length, firstSeq: fromNode.message.entries[0]!.seq, lastPayload: text(fromNode.message.entries.at(-1)!.payload) } : fromNode,
    ownCompressed: codec.compression.batchesCompressed,
    ownRatio: ours.length / uncompressed.length,
    own: own.ok && own.kind === 'batch' ? own.message.entries.length : own,
    bomb: new WireCodec().decode(sealUnsigned(bombBody(32 * 1024 * 1024), 'br')),
    flagOnPlain: codec.decode(sealRaw(plainBody, key, 'br', 'batch/br')),
  }),
);
