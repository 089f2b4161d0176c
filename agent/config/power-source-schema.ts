/**
 * The config's power.source (schema.ts names it there): one variant per kind of power source, each with what
 * reaches it (a serial line or a TCP device server, or the host and port of upsd) and its device's options.
 * Apart from the rest of the schema because it follows the bridge's device protocols, not the agent's parts.
 */
import { boolean, integer, number, object, oneOf, string, union } from './schema-dsl.ts';

const transport = union(
  'type',
  {
    serial: object(
      {
        type: oneOf(['serial'], { description: 'A serial line (USB-serial adapter, UART).' }),
        path: string({ description: 'Device path, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...' }),
        baudRate: integer({ description: 'Line speed; the protocol default when left out.', min: 300, max: 4_000_000, optional: true }),
      },
      { description: 'Serial transport.' },
    ),
    tcp: object(
      {
        type: oneOf(['tcp'], { description: 'Raw TCP to a serial device server (ser2net style).' }),
        host: string({ description: 'Host name or address.' }),
        port: integer({ description: 'TCP port.', min: 1, max: 65535 }),
      },
      { description: 'TCP transport.' },
    ),
  },
  { description: 'How to reach the device.' },
);

const pollMs = integer({ description: 'How often to poll the device.', min: 100, max: 60_000, unit: 'ms', optional: true });
const invertCurrent = boolean({ description: 'Flip the sign of the current if the device reports discharge as positive.', optional: true });
const acDischargeThresholdMa = integer({
  description: 'A pack cannot see mains: mains counts as lost once the pack discharges more than this.',
  min: 0,
  max: 1_000_000,
  unit: 'mA',
  optional: true,
});

/** config power.source: one variant per kind of device, `kind` naming it. */
export const powerSourceSchema = union(
  'kind',
  {
    none: object({ kind: oneOf(['none'], { description: 'No power source: the agent never sees a power failure.' }) }, { description: '' }),
    bridge: object({ kind: oneOf(['bridge'], { description: 'A BMS speaking the lastgasp bridge protocol.' }), transport, invertCurrent }, { description: '' }),
    jbd: object({ kind: oneOf(['jbd'], { description: 'JBD / Xiaoxiang smart BMS.' }), transport, pollMs, invertCurrent, acDischargeThresholdMa }, { description: '' }),
    daly: object(
      {
        kind: oneOf(['daly'], { description: 'Daly UART BMS.' }),
        transport,
        pollMs,
        invertCurrent,
        address: integer({ description: 'Request address byte (0x40 = board 1).', min: 0, max: 255, optional: true }),
        acDischargeThresholdMa,
      },
      { description: '' },
    ),
    q1: object(
      {
        kind: oneOf(['q1'], { description: 'Megatec Q1 UPS.' }),
        transport,
        pollMs,
        batteryVoltsLow: number({ description: 'Battery voltage at 0 % (Q1 reports volts only; both bounds are needed for a charge estimate).', min: 0, max: 1000, unit: 'V', optional: true }),
        batteryVoltsHigh: number({ description: 'Battery voltage at 100 %.', min: 0, max: 1000, unit: 'V', optional: true }),
      },
      { description: '' },
    ),
    nut: object(
      {
        kind: oneOf(['nut'], { description: 'A NUT server (upsd).' }),
        host: string({ description: 'upsd host.', default: '127.0.0.1' }),
        port: integer({ description: 'upsd port.', min: 1, max: 65535, default: 3493 }),
        ups: string({ description: 'UPS name as configured in ups.conf.' }),
        username: string({ description: 'upsd user (only needed for commands).', optional: true }),
        passwordFile: string({ description: 'File holding the upsd password.', optional: true }),
        pollMs,
      },
      { description: '' },
    ),
    sysfs: object(
      {
        kind: oneOf(['sysfs'], { description: 'Linux power_supply class.' }),
        path: string({ description: 'A /sys/class/power_supply/<name> directory.', optional: true }),
        pollMs,
      },
      { description: '' },
    ),
  },
  { description: 'Where power status comes from.', default: { kind: 'none' } },
);
