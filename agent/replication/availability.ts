/**
 * The plain availability topic `<prefix>/v1/<group>/<node>/availability`, retained, `online` or `offline`
 * in plain text, as zigbee2mqtt and Home Assistant read it: `online` at every connect, `offline` at a clean
 * stop, and `offline` from the broker (the MQTT Will) when the agent dies or its power goes.
 *
 * MQTT gives a session one Will, and the replication links' Will is the signed `offline` state record that
 * the takeover logic trusts. So availability has its own small session per broker: it subscribes to
 * nothing and publishes only this topic. It is unsigned by design: it is for dashboards, and nothing in
 * the group acts on it.
 *
 * Except for an agent that authenticates (a username or a client certificate): the brokers it is meant for
 * (broker-config auth.conf and tls.conf) make the client id the username, so a second session of the same
 * user takes over the replication session, and the two take it from each other for ever (the main link lost
 * its connection every second and a batch delivered to this session was dropped). Such an agent says
 * `online` and `offline` on the replication's own sessions (`shared`); the broker then says nothing when it
 * dies (the signed `offline` state record still does, for the group).
 */
import { boundedWait, type Clock, type Logger } from '../util/index.ts';
import { BrokerLink } from './broker-link.ts';

const ONLINE = new TextEncoder().encode('online');
const OFFLINE = new TextEncoder().encode('offline');
/** How long a clean stop waits for the brokers to take `offline`. */
const AVAILABILITY_STOP_WAIT_MS = 2000;

export interface AvailabilityOptions {
  /** One entry per broker link of the replication (a cluster's node addresses together). */
  brokers: ReadonlyArray<readonly string[]>;
  topic: string;
  clientId: string;
  protocol: 'auto' | '5' | '3.1.1';
  keepaliveS: number;
  username?: string;
  password?: string;
  tls?: { ca?: string; cert?: string; key?: string };
  logger: Logger;
  /** The stop's wait for the brokers, and the clock of the sessions of its own. */
  clock: Clock;
  /** The replication's links, to speak on instead of sessions of its own (see above); started and stopped by it. */
  shared?: readonly BrokerLink[];
}

export class Availability {
  private readonly links: readonly BrokerLink[];
  private readonly own: boolean;

  constructor(private readonly options: AvailabilityOptions) {
    this.own = options.shared === undefined;
    this.links = options.shared ?? options.brokers.map(
      (urls, index) =>
        new BrokerLink({
          urls,
          clientId: options.clientId,
          protocol: options.protocol,
          keepaliveS: options.keepaliveS,
          will: { topic: options.topic, payload: OFFLINE, retain: true },
          username: options.username,
          password: options.password,
          tls: options.tls,
          onMessage: async () => undefined,
          logger: options.logger.child(`broker${index}`),
          clock: options.clock,
        }),
    );
    for (const link of this.links) link.on('up', () => void this.say(link, ONLINE));
  }

  start(): void {
    if (this.own) for (const link of this.links) link.start();
  }

  /** A clean stop: `offline` on every broker that is reachable, then a DISCONNECT (the Will is not sent). */
  async stop(): Promise<void> {
    // A hung broker does not hold up the stop: it publishes the Will when the session ends instead.
    const offline = Promise.all(this.links.map((link) => (link.connected ? this.say(link, OFFLINE) : Promise.resolve())));
    await boundedWait(this.options.clock, offline, AVAILABILITY_STOP_WAIT_MS);
    if (this.own) await Promise.all(this.links.map((link) => link.stop()));
  }

  /** Power is going: drop the sessions so that the brokers publish the Will. */
  async abort(): Promise<void> {
    if (this.own) await Promise.all(this.links.map((link) => link.abort()));
  }

  private async say(link: BrokerLink, payload: Uint8Array): Promise<void> {
    await link.publish(this.options.topic, payload, { qos: 1, retain: true }).catch((error: unknown) => this.options.logger.debug('availability not published', { error }));
  }
}
