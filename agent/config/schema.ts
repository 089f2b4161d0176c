/**
 * The agent's configuration: every key, its default and its meaning. `lastgasp config defaults` prints
 * this as documentation; `lastgasp config check FILE` validates against it.
 * It stays the one list of every key, in the order an operator reads them; only the power source's variants
 * (one per device protocol, each with its transport) are in power-source-schema.ts, named here as
 * power.source.
 */
import { array, boolean, bytes, integer, number, object, oneOf, record, string, url, type Infer } from './schema-dsl.ts';
import { powerSourceSchema } from './power-source-schema.ts';

// Names become MQTT topic levels. No ".": NATS maps MQTT topics to subjects and closes the connection on a
// "." (MQTT.js would then resend the stored PUBLISH after every reconnect, forever).
const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const NAME_TEXT = 'a name of 1-64 letters, digits, "_" or "-" (used in MQTT topics)';
const hook = (when: string) => array(string({ description: 'Program, then its arguments.', minLength: 1 }), { description: `Command run when ${when}.`, optional: true, minItems: 1 });
const MQTT_URL = { protocols: ['mqtt:', 'mqtts:', 'tcp:', 'ssl:'], example: 'mqtt://host:port or mqtts://host:port' };

export const configSchema = object(
  {
    node: string({ description: 'This gateway\'s name, unique in the group.', pattern: NAME, patternText: NAME_TEXT }),
    group: string({ description: 'The replication group (the gateways that stand in for each other).', pattern: NAME, patternText: NAME_TEXT }),
    dataDir: string({ description: 'Directory for the log, snapshots and state; on the flash you want to survive.' }),
    role: oneOf(['primary', 'standby'], {
      description: 'Role when the group has no leader yet. Afterwards the epoch in the retained leader record decides.',
      default: 'standby',
    }),
    siblings: array(string({ description: 'Node name.', pattern: NAME, patternText: NAME_TEXT }), {
      description: 'The other gateways of the group that hold a replica.',
      default: [],
    }),
    api: object(
      {
        listen: string({
          description: 'Where the local API listens: host:port (loopback) or unix:/path/to/socket.',
          default: 'unix:/run/lastgasp/api.sock',
          pattern: /^(unix:\/.+|[A-Za-z0-9.:[\]-]+:\d{1,5})$/,
          patternText: 'unix:/run/lastgasp/api.sock or 127.0.0.1:8181',
        }),
        // Who may call the API and how much of the agent its clients may use (issue 9; README "Security").
        socketMode: string({ description: 'Unix socket: its permission bits (owner and group may connect; 0660 = the agent\'s user and socketGroup).', default: '0660', pattern: /^0?[0-7]{3}$/, patternText: 'octal mode such as 0660' }),
        socketGroup: string({ description: 'Unix socket: the group that owns it (name or number); applications join this group to get access. Default: the agent\'s own group.', optional: true }),
        tokenFile: string({ description: 'TCP: file holding the bearer token every request must send (Authorization: Bearer ...). Created (0600) at first start if absent. Default: <dataDir>/api.token.', optional: true }),
        allowedHosts: array(string({ description: 'Host name.' }), { description: 'Host header values accepted besides loopback names and addresses (DNS-rebinding defence).', default: [] }),
        allowedOrigins: array(string({ description: 'Origin, e.g. https://hmi.plant.example.' }), { description: 'Origins whose browser requests are accepted; any other request carrying an Origin header is refused.', default: [] }),
        tls: object(
          {
            certFile: string({ description: 'Server certificate (PEM): serve HTTPS.', optional: true }),
            keyFile: string({ description: 'Server key (PEM); must not be readable by group or others.', optional: true }),
          },
          { description: 'HTTPS for a TCP listen; required for a non-loopback address.' },
        ),
        connectionsMax: integer({ description: 'Most API connections open at once; the agent lowers it to stay well under its descriptor limit (RLIMIT_NOFILE). Excess connections are closed at once and counted.', default: 256, min: 1, max: 65_536 }),
        connectionsPerClientMax: integer({ description: 'TCP: most connections open at once from one remote address (every local client shares 127.0.0.1, so leave room for their pools; a Unix socket has no per-client limit: Node cannot read the peer\'s uid).', default: 128, min: 1, max: 65_536 }),
        headersTimeoutMs: integer({ description: 'A request\'s headers must arrive within this (slowloris defence).', default: 10_000, min: 100, max: 600_000, unit: 'ms' }),
        requestTimeoutMs: integer({ description: 'A whole request, body included, must arrive within this.', default: 30_000, min: 100, max: 3_600_000, unit: 'ms' }),
        idleTimeoutMs: integer({ description: 'An idle keep-alive connection is closed after this.', default: 5_000, min: 100, max: 600_000, unit: 'ms' }),
        ackAfter: oneOf(['flash', 'broker', 'replica'], {
          description: 'When a write (API or embedded) is acknowledged unless it asks otherwise (?ackAfter=): flash = fdatasynced here; broker = also replicated at the broker level; replica = also on a sibling\'s flash (README "Writes that wait for their copy").',
          default: 'flash',
        }),
        ackAfterTimeoutMs: integer({ description: 'How long a write waits for its copy before it fails with NOT_REPLICATED (it stays on this node\'s flash).', default: 10_000, min: 1, max: 600_000, unit: 'ms' }),
      },
      { description: 'The application\'s local HTTP API.' },
    ),
    log: object(
      {
        segmentBytes: bytes({ description: 'Segment file size (preallocated).', default: 64 * 1024 * 1024, min: 64 * 1024 }),
        entryBytesMax: bytes({ description: 'Largest entry an application may append (also the API\'s request body limit).', default: 256 * 1024, min: 16 }),
        lingerMs: integer({ description: 'How long a batch may wait for more appends before its fdatasync (spares the flash).', default: 2, min: 0, max: 1000, unit: 'ms' }),
        lingerBytes: bytes({ description: 'A batch is synced at once when it holds this much.', default: 256 * 1024, min: 0 }),
        quotaBytes: bytes({ description: 'Most disk space the log may use.', default: 1024 * 1024 * 1024, min: 1024 * 1024 }),
        unreplicatedSoftBytes: bytes({ description: 'Unreplicated bytes above which writers are slowed down (0 = off).', default: 0, min: 0 }),
        unreplicatedHardBytes: bytes({ description: 'Unreplicated bytes at which appends fail with LOG_FULL (0 = the quota).', default: 0, min: 0 }),
        fullPolicy: oneOf(['reject', 'wait'], { description: 'When full: fail appends with LOG_FULL, or make them wait.', default: 'reject' }),
        snapshotEveryEntries: integer({
          description: 'Snapshot the key-value state after this many applied entries; retention keeps every segment the latest snapshot does not cover. A snapshot also comes after a quarter of quotaBytes of entries (0 = neither: only at a clean stop).',
          default: 100_000,
          min: 0,
          max: 100_000_000,
        }),
        // The throttle in seconds of flush: what is acknowledged on battery can still leave in the hold-up time.
        unreplicatedSoftS: number({ description: 'Unreplicated data above which writers are slowed down, in seconds of flush at the drain rate measured on the link (0 = off; with unreplicatedSoftBytes, the smaller).', default: 0, min: 0, unit: 's' }),
        unreplicatedHardS: number({ description: 'Unreplicated data at which appends fail with LOG_FULL, in seconds of flush at the measured drain rate (0 = off; with unreplicatedHardBytes, the smaller). Until a rate is measured only the byte limits hold.', default: 0, min: 0, unit: 's' }),
      },
      { description: 'The flash log.' },
    ),
    replication: object(
      {
        brokers: array(
          object(
            { url: url({ description: 'Broker address.', ...MQTT_URL }) },
            { description: 'A broker.' },
          ),
          { description: 'Broker addresses.', minItems: 1, maxItems: 8 },
        ),
        mode: oneOf(['cluster', 'independent'], {
          description: 'cluster: one clustered broker, the list is failover addresses. independent: publish to every broker and count a quorum.',
          default: 'cluster',
        }),
        quorum: integer({ description: 'independent mode: brokers that must PUBACK (default: a majority).', min: 1, max: 8, optional: true }),
        durability: oneOf(['replica', 'broker'], {
          description: 'When an entry counts as replicated: replica = a sibling has it on flash; broker = the broker quorum sent PUBACK.',
          default: 'replica',
        }),
        replicaAcks: integer({
          description: 'durability replica: siblings that must hold an entry on flash before it counts as replicated (default: every sibling listed).',
          min: 1,
          max: 8,
          optional: true,
        }),
        topicPrefix: string({ description: 'Prefix of every topic.', default: 'lastgasp', pattern: /^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/, patternText: 'topic levels of letters, digits, "_" or "-" separated by "/" (NATS refuses "." and spaces)' }),
        protocol: oneOf(['auto', '5', '3.1.1'], { description: 'MQTT version: auto tries 5 and falls back to 3.1.1.', default: 'auto' }),
        batchEntriesMax: integer({ description: 'Most entries per batch message.', default: 2048, min: 1, max: 65_536 }),
        // 512 KiB stays under NATS's default max_payload (1 MB) with room for the envelope.
        compression: oneOf(['auto', 'off'], {
          description: 'auto: a batch is compressed (Brotli) when compressing and sending it is quicker than sending it as it is, judged from the link\'s measured rate (README "Compression"); off: never (while receivers older than the compression flag are still in the group).',
          default: 'auto',
        }),
        batchBytesMax: bytes({ description: 'Most bytes per batch message (keep it under the broker\'s packet limit).', default: 512 * 1024, min: 4096, max: 64 * 1024 * 1024 }),
        windowMax: integer({ description: 'Most batches in flight (unacknowledged) at once.', default: 8, min: 1, max: 1024 }),
        coalesce: boolean({
          description: 'While a batch awaits its brokers, what is committed meanwhile waits for that acknowledgement unless it holds 64 KiB or 256 entries: under load fewer, larger batches (less CPU, fewer signatures per entry), for up to one broker round trip of added lag; never during the brownout flush.',
          default: true,
        }),
        prepareAheadBytes: bytes({
          description: 'Memory for batches of the unreplicated tail read, encoded and signed ahead while the brokers cannot take them, so that a brownout flush only sends bytes; 0: none prepared.',
          default: 16 * 1024 * 1024,
          min: 0,
          max: 1024 * 1024 * 1024,
        }),
        keepaliveS: integer({ description: 'MQTT keepalive.', default: 10, min: 1, max: 3600, unit: 's' }),
        heartbeatMs: integer({ description: 'How often the primary publishes its state (the sibling\'s silence detector).', default: 2000, min: 100, unit: 'ms' }),
        username: string({ description: 'MQTT user name.', optional: true }),
        passwordFile: string({ description: 'File holding the MQTT password (never put it in this file).', optional: true }),
        passwordEnv: string({ description: 'Environment variable holding the MQTT password.', optional: true }),
        // Who may speak for the group (agent/replication/wire-auth.ts): per-node Ed25519 signatures, a
        // group HMAC key, or, only when said so in a key named for it, nothing at all.
        signing: object(
          {
            keyFile: string({ description: 'This node\'s Ed25519 private key (PEM, mode 0600); "lastgasp keys generate --out DIR --node NAME" makes one.' }),
            publicKeys: record(string({ description: 'A public key.', patternText: 'base64 of the raw key (44 characters, as "lastgasp keys show" prints it) or a file holding it' }), {
              description: 'Every member\'s public key, this node\'s own included: messages are accepted only when signed by the node they come from.',
              keyPattern: NAME,
              keyText: NAME_TEXT,
              minItems: 1,
            }),
          },
          { description: 'Per-node signatures (recommended): each gateway signs what it publishes with its own key, so that no member can speak as another.', optional: true },
        ),
        hmacKeyFile: string({ description: 'File with a group key (at least 16 bytes): every message is signed with HMAC-SHA256 and receivers reject unsigned or forged ones. Any holder can sign as any member; prefer signing.', optional: true }),
        insecureUnsigned: boolean({
          description: 'Run the group without signatures: anyone who can publish to the brokers can forge leader records, acks and batches. For a closed test bench only; every start logs a warning.',
          default: false,
        }),
        tls: object(
          {
            caFile: string({ description: 'CA certificate (PEM).', optional: true }),
            certFile: string({ description: 'Client certificate (PEM).', optional: true }),
            keyFile: string({ description: 'Client key (PEM).', optional: true }),
          },
          { description: 'TLS for mqtts:// brokers.' },
        ),
        // The direct path to the siblings beside the brokers (agent/replication/direct/, issue 15).
        direct: object(
          {
            listen: string({ description: 'host:port this node listens on for its group\'s peers (TLS, authenticated with the node keys of replication.signing); open it in the firewall to the siblings only.' }),
            peers: array(
              object(
                {
                  node: string({ description: 'The sibling\'s node name (its key is in replication.signing.publicKeys).', pattern: NAME, patternText: NAME_TEXT }),
                  address: string({ description: 'host:port of that sibling\'s replication.direct.listen.' }),
                },
                { description: 'A sibling reachable directly.' },
              ),
              { description: 'The siblings to stream to and receive from directly.', minItems: 1, maxItems: 8 },
            ),
            always: boolean({ description: 'Stream every batch directly, not only during the brownout flush (costs a TLS copy of the replication traffic to each peer).', default: false }),
          },
          { description: 'A direct TLS path to the siblings beside the brokers: during the brownout flush (or always) batches, acks and the handoff record also travel on it, so the tail gets out when no broker answers.', optional: true },
        ),
      },
      { description: 'Replication over MQTT.' },
    ),
    power: object(
      {
        source: powerSourceSchema,
        socPercentMin: integer({ description: 'Brownout when the state of charge falls to this (0 = off).', default: 20, min: 0, max: 100, unit: '%' }),
        runtimeSMin: integer({ description: 'Brownout when the runtime estimate falls to this (0 = off).', default: 60, min: 0, unit: 's' }),
        onBatterySMax: integer({ description: 'Brownout after this long on battery (0 = off).', default: 0, min: 0, unit: 's' }),
        trustDeviceLowBattery: boolean({ description: 'Also treat the device\'s own low-battery flag as a brownout.', default: true }),
        onBatteryDebounceMs: integer({ description: 'AC loss must last this long before anything irreversible (the tail flush starts at once).', default: 2000, min: 0, unit: 'ms' }),
        linkDeadMs: integer({ description: 'On battery, a power-source link silent this long counts as a brownout.', default: 15_000, min: 100, unit: 'ms' }),
        // The energy plan: start the brownout when the tail would no longer fit the energy left (agent/power/energy.ts).
        energyAware: boolean({ description: 'On battery, also start the brownout when the time the tail needs to leave (unreplicated bytes ÷ the measured drain rate, plus the handoff) comes within energyMarginMs of the time the battery has left.', default: true }),
        energyMarginMs: integer({ description: 'Margin kept between the time the tail needs and the time the battery has left.', default: 2000, min: 0, unit: 'ms' }),
        batteryMah: integer({ description: 'Pack capacity, for the time left from charge and discharge current when the source reports no runtime (0 = unknown).', default: 0, min: 0, unit: 'mAh' }),
        flushBudgetMs: integer({ description: 'Longest from the brownout until the handoff record is on the brokers (marked incomplete if the tail is not all out): the record leaves as early as it needs to get out behind what is in flight, measured on the link; an incomplete record names the budget left, the flush goes on behind it, and the sibling takes over when that tail ends.', default: 10_000, min: 100, unit: 'ms' }),
        handoffAckTimeoutMs: integer({ description: 'How long to wait for the sibling to acknowledge the handoff.', default: 3000, min: 0, unit: 'ms' }),
        cutDelayMs: integer({ description: 'Delay the BMS is given before it cuts power.', default: 500, min: 0, unit: 'ms' }),
        restartAfterPowerOffMs: integer({
          description: 'Still running this long after handing off (the power never went): exit so that the service manager restarts this node, which then rejoins as a standby.',
          default: 60_000,
          min: 1000,
          unit: 'ms',
        }),
      },
      { description: 'Power supervision.' },
    ),
    takeover: object(
      {
        onHandoff: boolean({ description: 'Take over at once when the primary publishes a handoff record.', default: true }),
        silenceMs: integer({
          description: 'Take over when every primary has been silent this long (measured while this node hears its own heartbeats); 0 = never: leadership then moves only by handoff, and a primary keeps accepting writes with no uplink. Must be at least (leaseMs + 2 x replication.heartbeatMs) / 0.9.',
          default: 0,
          min: 0,
          unit: 'ms',
        }),
        leaseMs: integer({
          description: 'With silenceMs: a primary acknowledges writes only until this long after sending the newest heartbeat that came back from a quorum of brokers. Default: 0.9 x silenceMs - 2 x replication.heartbeatMs (the largest safe lease). At least 3 x replication.heartbeatMs.',
          min: 1,
          optional: true,
          unit: 'ms',
        }),
        brokerWaitMs: integer({
          description: 'At start, how long to wait for a broker before deciding the role from the last leader record this node saw (or the configured role).',
          default: 10_000,
          min: 0,
          unit: 'ms',
        }),
      },
      { description: 'Sibling takeover.' },
    ),
    mqttIngest: object(
      {
        listen: string({
          description: 'Serve a local MQTT broker here (loopback host:port or unix:/path); unset = off. QoS 1/2 publishes on journaled topics are acknowledged only once on flash; on TCP clients send the API token as their password.',
          optional: true,
          pattern: /^(unix:\/.+|(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d{1,5})$/,
          patternText: 'a loopback address such as 127.0.0.1:1883, or unix:/run/lastgasp/mqtt.sock',
        }),
        journal: array(string({ description: 'MQTT topic filter (+ and # wildcards).', minLength: 1 }), { description: 'Topics whose QoS 1/2 messages become log entries; others are only relayed to local subscribers.', default: ['#'] }),
        socketMode: string({ description: 'Unix socket: its permission bits.', default: '0660', pattern: /^0?[0-7]{3}$/, patternText: 'octal mode such as 0660' }),
        ackAfter: record(oneOf(['flash', 'broker', 'replica'], { description: 'Level.' }), {
          description: 'Per journaled topic filter: PUBACK only once the message is copied at this level (see api.ackAfter; the first matching filter wins, others take api.ackAfter). A copy that does not come within api.ackAfterTimeoutMs closes the connection without PUBACK: the client sends the message again.',
          keyPattern: /^[^\u0000]+$/,
          keyText: 'a topic filter',
          default: {},
        }),
        // Store-and-forward to an upstream broker from the node that leads (agent/app/forwarder.ts).
        forward: object(
          {
            url: url({ description: 'Upstream broker (MQTT 5): journaled messages are published there, QoS 1, in seq order, from the node that leads.', ...MQTT_URL }),
            username: string({ description: 'MQTT user name at the upstream broker.', optional: true }),
            passwordFile: string({ description: 'File holding the upstream MQTT password (mode 0600).', optional: true }),
            clientId: string({ description: 'MQTT client id; the node name is appended ("-<node>"), so that two nodes never take each other\'s session. Default: lastgasp-<group>.', optional: true }),
            topicPrefix: string({ description: 'Prepended to every forwarded topic with a "/" (unset: the original topic).', optional: true, pattern: /^[^+#\u0000]+$/, patternText: 'topic levels without wildcards' }),
            windowMax: integer({ description: 'Most publishes awaiting their PUBACK at once.', default: 32, min: 1, max: 65_535 }),
            markEveryMessages: integer({ description: 'Record the forwarded position in the log (replicated, so the sibling goes on from there) after this many PUBACKs; after a takeover at most about this many go upstream twice.', default: 100, min: 1, max: 1_000_000 }),
            markIntervalMs: integer({ description: 'Record the position at the latest this long after the first PUBACK it does not cover.', default: 1000, min: 10, max: 600_000, unit: 'ms' }),
            reconnectMs: integer({ description: 'Delay before connecting again after the upstream connection was lost.', default: 2000, min: 10, max: 600_000, unit: 'ms' }),
            after: oneOf(['replicated', 'flash'], { description: 'replicated: forward what the group holds (replicated at replication.durability), so nothing a takeover sets aside goes upstream; flash: forward once fsynced here (sooner; upstream may see messages the group later sets aside).', default: 'replicated' }),
          },
          { description: 'Forward journaled messages upstream from the node that leads, the position replicated (README "Forwarding upstream").', optional: true },
        ),
      },
      { description: 'The local MQTT listener: applications publish as to mosquitto and get the log\'s guarantee.' },
    ),
    app: object(
      {
        command: array(string({ description: 'Program, then its arguments.', minLength: 1 }), {
          description: 'The application, run while this node is primary (started once its state is caught up and writes are open, stopped before it stands down). Its environment adds LASTGASP_NODE, LASTGASP_GROUP, LASTGASP_EPOCH, LASTGASP_API, LASTGASP_API_TOKEN_FILE, LASTGASP_APPLIED_SEQ. Unset: no application is managed.',
          optional: true,
          minItems: 1,
        }),
        // Or a systemd unit (agent/app/unit-runner.ts): started and stopped with systemctl, its state polled.
        unit: string({
          description: 'A systemd unit that runs the application (instead of command): "systemctl start" when this node becomes primary, "systemctl stop" before it stands down. Its environment (the LASTGASP_* variables) is written to <dataDir>/app.env before each start: add EnvironmentFile=-<that path> to the unit.',
          optional: true,
          pattern: /^[A-Za-z0-9:_.@\\-]+\.(service|target|scope)$/,
          patternText: 'a unit name such as collector.service',
        }),
        user: boolean({ description: 'app.unit: use "systemctl --user" (the agent\'s own user manager) instead of the system manager.', default: false }),
        pollMs: integer({ description: 'app.unit: how often "systemctl is-active" is asked while this node leads; a unit found inactive or failed is started again after the restart delay.', default: 2000, min: 100, max: 600_000, unit: 'ms' }),
        env: record(string({ description: 'Value.' }), { description: 'Extra environment variables for the application.', keyPattern: /^[A-Za-z_][A-Za-z0-9_]*$/, keyText: 'an environment variable name', default: {} }),
        cwd: string({ description: 'Working directory of the application (default: the data directory).', optional: true }),
        stopTimeoutMs: integer({ description: 'After SIGTERM, how long the application may take to exit before SIGKILL.', default: 5000, min: 0, unit: 'ms' }),
        restartDelayMs: integer({ description: 'Delay before restarting an application that exited on its own; doubled for every exit within stableMs of its start.', default: 1000, min: 0, unit: 'ms' }),
        restartDelayMsMax: integer({ description: 'Longest restart delay (a crash loop is retried this often).', default: 60_000, min: 0, unit: 'ms' }),
        stableMs: integer({ description: 'An application that ran this long before exiting is restarted after restartDelayMs again.', default: 30_000, min: 0, unit: 'ms' }),
        sqlite: array(
          object(
            {
              path: string({ description: 'The database file the application opens (absolute, on a local file system). The application must use journal_mode=WAL and should set wal_autocheckpoint=0 (README, "SQLite databases").', pattern: /^\//, patternText: 'an absolute path' }),
              name: string({ description: 'Its name in the log, status and metrics (default: the file name without its extension).', optional: true, pattern: NAME, patternText: NAME_TEXT }),
              pollMs: integer({ description: 'How often the WAL is read when no file-change event came (events usually come first).', default: 10, min: 1, max: 1000, unit: 'ms' }),
              copyIntervalMs: integer({ description: 'While the application writes, the WAL is copied at most once per this interval: the transactions committed meanwhile go into the log with one fsync and to the standby in one batch, instead of one each. The capture lags by up to this much more. 0: copy at every change.', default: 10, min: 0, max: 1000, unit: 'ms' }),
              applyIntervalMs: integer({ description: 'On a standby, what new commits bring is applied to the copy at most once per this interval (each apply costs two fsyncs): the copy lags by up to this much; a takeover applies everything first. 0: apply after every commit.', default: 100, min: 0, max: 10_000, unit: 'ms' }),
              checkpointFrames: integer({ description: 'The agent checkpoints (PASSIVE) once this many copied frames are in the WAL: it bounds the WAL.', default: 1000, min: 1, max: 1_000_000 }),
              walBytesMax: bytes({ description: 'While the log refuses the capture\'s appends (the brokers away and log.unreplicatedHard* reached), the WAL keeps the transactions not yet in the log and grows; past this many bytes they are given up: the WAL starts over, the standby keeps its copy as of the last transaction the log took, and a new snapshot of the database follows once the log has room (README, "SQLite databases").', default: 256 * 1024 * 1024, min: 1024 * 1024 }),
            },
            { description: 'A SQLite database that follows leadership with the application.' },
          ),
          { description: 'SQLite databases of the application: their WAL is copied into the log as it is written, kept on the sibling, and the application starts there with them (README, "SQLite databases").', default: [] },
        ),
      },
      { description: 'The application that moves with leadership.' },
    ),
    logging: object(
      {
        level: oneOf(['debug', 'info', 'warn', 'error'], { description: 'Log level.', default: 'info' }),
        json: boolean({ description: 'One JSON object per log line.', default: false }),
      },
      { description: 'Logging.' },
    ),
    metrics: object(
      {
        listen: string({
          description: 'Also serve GET /metrics (Prometheus text format, no token) on this loopback host:port; unset = only on the API listener.',
          optional: true,
          pattern: /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d{1,5}$/,
          patternText: 'a loopback address such as 127.0.0.1:9469',
        }),
      },
      { description: 'Metrics for Prometheus scrapers (GET /metrics is always served on the API listener too).' },
    ),
    hooks: object(
      {
        powerLost: hook('the power source reports mains lost (ON_BATTERY)'),
        powerRestored: hook('mains back (ONLINE again after ON_BATTERY)'),
        brownout: hook('a brownout: the point of no return (the flush begins)'),
        flushDone: hook('the brownout flush ended (LASTGASP_EVENT_COMPLETE, _LAST_SEQ, _COMMITTED, _FLUSH_MS)'),
        handoff: hook('this node published its handoff record (LASTGASP_EVENT_TO, _COMPLETE)'),
        takeover: hook('this node became primary (LASTGASP_EVENT_EPOCH, _REASON)'),
        demotion: hook('this node stood down to standby (LASTGASP_EVENT_EPOCH, _REASON)'),
        quarantine: hook('entries were set aside in a quarantine file (LASTGASP_EVENT_RECORDS)'),
        shell: boolean({ description: 'Run each hook as one string through /bin/sh -c (its first element; the rest are ignored) instead of executing the program directly.', default: false }),
        timeoutMs: integer({ description: 'A hook still running after this long gets SIGKILL (and counts as failed).', default: 10_000, min: 100, max: 600_000, unit: 'ms' }),
      },
      {
        description:
          'Event hooks, as NUT\'s NOTIFYCMD: a command run (not through a shell unless hooks.shell) with LASTGASP_EVENT (its name), LASTGASP_EVENT_NODE, LASTGASP_EVENT_GROUP, LASTGASP_EVENT_TIME_MS, LASTGASP_EVENT_POWER_STATE and the event\'s own LASTGASP_EVENT_* fields in its environment; time-limited, its output logged, failures counted (status hooks), never awaited by the flush.',
      },
    ),
  },
  { description: 'lastgasp agent configuration' },
);

export type AgentConfig = Infer<typeof configSchema>;
