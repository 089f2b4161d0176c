export { PowerSupervisor, type SupervisorHost, type SupervisorOptions, type FlushEnd, type FlushOutcome, type TimelineEntry, type SupervisorEvents } from './supervisor.ts';
export { step, initialState, BROWNOUT_ALARM, type PowerStateName, type Thresholds, type MachineState, type Input, type Action, type Step, type BrownoutCheck, type HeldBrownout, type BrownoutTrigger } from './machine.ts';
export { flushNeedMs, timeLeft, throttleBytes, type TailEnergy, type TailEstimate, type TimeLeft } from './energy.ts';
export { createPowerSource } from './bridge-source.ts';
export { Brownout, EXIT_RESTART_AS_STANDBY, type BrownoutOptions, type BrownoutSteps, type BrownoutLog, type BrownoutReplication, type BrownoutRoles, type BrownoutApplication, type HandoffRecord } from './brownout.ts';
