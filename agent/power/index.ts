export { PowerSupervisor, type SupervisorHost, type SupervisorOptions, type TimelineEntry, type SupervisorEvents } from './supervisor.ts';
export { step, initialState, BROWNOUT_ALARM, type PowerStateName, type Thresholds, type MachineState, type Input, type Action, type Step, type BrownoutCheck, type HeldBrownout, type BrownoutTrigger } from './machine.ts';
export { flushNeedMs, timeLeft, throttleBytes, type TailEnergy, type TailEstimate, type TimeLeft } from './energy.ts';
export { createPowerSource } from './bridge-source.ts';
export { Brownout, runBrownout, EXIT_RESTART_AS_STANDBY, type BrownoutRun, type BrownoutInput, type FlushEnd, type FlushOutcome, type BrownoutSteps } from './brownout.ts';
export type { BrownoutOptions, BrownoutLog, BrownoutReplication, BrownoutRoles, BrownoutApplication, HandoffRecord } from './brownout-parts.ts';
