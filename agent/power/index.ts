/**
 * Power: the state machine (machine.ts, pure), its supervisor (supervisor.ts: when the brownout starts, and
 * how large its budget is), the brownout itself (brownout.ts: its order and its steps, over the parts that
 * brownout-parts.ts declares), the energy rules (energy.ts) and the power source made from the config
 * (bridge-source.ts).
 */
export { PowerSupervisor, type SupervisorHost, type SupervisorOptions, type TimelineEntry, type SupervisorEvents } from './supervisor.ts';
export { step, initialState, BROWNOUT_ALARM, type PowerStateName, type Thresholds, type MachineState, type Input, type Action, type Step, type BrownoutCheck, type HeldBrownout, type BrownoutTrigger } from './machine.ts';
export { flushNeedMs, timeLeft, throttleBytes, type TailEnergy, type TailEstimate, type TimeLeft } from './energy.ts';
export { createPowerSource } from './bridge-source.ts';
export { Brownout, runBrownout, EXIT_RESTART_AS_STANDBY, type BrownoutRun, type BrownoutInput, type FlushEnd, type FlushOutcome, type BrownoutSteps } from './brownout.ts';
export type { BrownoutOptions, BrownoutLog, BrownoutReplication, BrownoutRoles, BrownoutApplication, HandoffRecord } from './brownout-parts.ts';
